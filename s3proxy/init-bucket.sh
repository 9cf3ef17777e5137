#!/bin/bash
# The bucket init of docker-compose (service s3-init, a one-shot): create bucket
# S3_BUCKET on S3_ENDPOINT_URL (a signed PUT); one that exists already is fine.
set -euo pipefail
: "${S3_ENDPOINT_URL:?}" "${S3_BUCKET:?}" "${S3_ACCESS_KEY:?}" "${S3_SECRET_KEY:?}"

# SHA-256 of the empty body, which a v4 signature covers.
EMPTY=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
for attempt in $(seq 30); do
    code="$(curl -s -o /tmp/answer -w '%{http_code}' -X PUT \
        --aws-sigv4 "aws:amz:${AWS_REGION:-us-east-1}:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
        -H "x-amz-content-sha256: $EMPTY" "$S3_ENDPOINT_URL/$S3_BUCKET" || true)"
    case "$code" in
    200) echo "bucket $S3_BUCKET created" && exit 0 ;;
    409) echo "bucket $S3_BUCKET exists" && exit 0 ;;
    000) echo "no answer from $S3_ENDPOINT_URL yet (attempt $attempt)" ;;
    *) echo "creating bucket $S3_BUCKET: HTTP $code" && cat /tmp/answer && echo && exit 1 ;;
    esac
    sleep 2
done
exit 1
