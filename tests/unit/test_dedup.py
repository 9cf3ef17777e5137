from mqtt_bridge.dedup import RecentKeys, Verdict


def test_new_then_redelivery_then_duplicate():
    keys = RecentKeys(capacity=1000)
    assert keys.check(("S1", 1), digest=11, redelivery_flag=False) is Verdict.NEW
    # The broker resends the same message (DUP flag): drop it.
    assert keys.check(("S1", 1), digest=11, redelivery_flag=True) is Verdict.REDELIVERY
    # The same reading published again (no DUP flag): a data-quality duplicate.
    assert keys.check(("S1", 1), digest=11, redelivery_flag=False) is Verdict.DUPLICATE
    # A DUP-flagged message with other content under the same key is no resend.
    assert keys.check(("S1", 1), digest=99, redelivery_flag=True) is Verdict.DUPLICATE
    assert keys.check(("S2", 1), digest=11, redelivery_flag=False) is Verdict.NEW


def test_memory_is_bounded_and_forgets_the_oldest_first():
    keys = RecentKeys(capacity=1000)
    for i in range(1500):
        keys.remember(("S", i), i)
    assert len(keys) == 1000
    assert keys.check(("S", 0), 0, True) is Verdict.NEW  # forgotten
    assert keys.check(("S", 1499), 1499, True) is Verdict.REDELIVERY
