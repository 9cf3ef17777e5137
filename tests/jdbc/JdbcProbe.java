/*
 * What DBeaver does through Trino's JDBC driver, as one JSON object per line on stdout
 * (tests/integration/test_jdbc.py reads them):
 *
 *   java -cp trino-jdbc-476.jar tests/jdbc/JdbcProbe.java URL USER STATEMENTS [SCHEMA ...]
 *
 * URL is e.g. jdbc:trino://localhost:8443/lake?SSL=true&SSLTrustStorePath=ca.pem (TLS,
 * trusting Trino's certificate, a PEM file); the password is TRINO_PASSWORD's, from the
 * environment (not the command line, which other users can read). STATEMENTS
 * is a file of SQL statements, one per line, each Base64-encoded (UTF-8), so that a
 * statement may hold newlines, comments and quotes. For each statement i (from 0):
 *   {"statement": i, "columns": [...], "types": [...], "rows": [[...], ...]}
 *   or {"statement": i, "error": "..."}
 * Values are JSON numbers (integers, finite doubles), booleans, null or strings:
 * timestamps and dates as ISO-8601 (java.time's toString), wall-clock in the JVM's
 * zone, anything else by toString(). Then, through DatabaseMetaData as DBeaver's
 * navigator reads it, every table and view of each SCHEMA in the URL's catalog:
 *   {"table": "schema.name", "type": "TABLE" | "VIEW", "remarks": ...}
 * and each of its columns:
 *   {"column": "schema.name.column", "type": "...", "remarks": ...}
 * Exit code 0 when it could connect and list; a failed statement is reported, not fatal.
 * Only the JDK and the driver: the JSON is written by hand.
 */

import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Timestamp;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Properties;

public class JdbcProbe {
    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: JdbcProbe URL USER STATEMENTS [SCHEMA ...]");
            System.exit(2);
        }
        Properties props = new Properties();
        props.setProperty("user", args[1]);
        String password = System.getenv("TRINO_PASSWORD");
        if (password != null && !password.isEmpty()) {
            props.setProperty("password", password);
        }
        List<String> statements = new ArrayList<>();
        for (String line : Files.readAllLines(Path.of(args[2]))) {
            if (!line.isBlank()) {
                statements.add(new String(Base64.getDecoder().decode(line.strip()), StandardCharsets.UTF_8));
            }
        }
        try (Connection conn = DriverManager.getConnection(args[0], props)) {
            for (int i = 0; i < statements.size(); i++) {
                System.out.println(run(conn, i, statements.get(i)));
            }
            DatabaseMetaData meta = conn.getMetaData();
            for (int s = 3; s < args.length; s++) {
                describe(meta, conn.getCatalog(), args[s]);
            }
        }
    }

    static String run(Connection conn, int index, String sql) {
        StringBuilder out = new StringBuilder("{\"statement\": ").append(index);
        try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery(sql)) {
            ResultSetMetaData md = rs.getMetaData();
            int n = md.getColumnCount();
            List<String> labels = new ArrayList<>();
            List<String> types = new ArrayList<>();
            for (int c = 1; c <= n; c++) {
                labels.add(json(md.getColumnLabel(c)));
                types.add(json(md.getColumnTypeName(c)));
            }
            out.append(", \"columns\": [").append(String.join(", ", labels)).append("]");
            out.append(", \"types\": [").append(String.join(", ", types)).append("]");
            out.append(", \"rows\": [");
            for (boolean first = true; rs.next(); first = false) {
                List<String> row = new ArrayList<>();
                for (int c = 1; c <= n; c++) {
                    row.add(value(rs.getObject(c)));
                }
                out.append(first ? "" : ", ").append("[").append(String.join(", ", row)).append("]");
            }
            out.append("]");
        } catch (SQLException e) {
            out.append(", \"error\": ").append(json(String.valueOf(e.getMessage())));
        }
        return out.append("}").toString();
    }

    /** The tables and views of one schema and their columns, with their REMARKS. */
    static void describe(DatabaseMetaData meta, String catalog, String schema) throws SQLException {
        // getTables/getColumns take LIKE patterns: `_` in a schema name is a wildcard.
        String esc = meta.getSearchStringEscape();
        String pattern = schema.replace(esc, esc + esc).replace("_", esc + "_").replace("%", esc + "%");
        List<String> tables = new ArrayList<>();
        try (ResultSet rs = meta.getTables(catalog, pattern, "%", new String[] {"TABLE", "VIEW"})) {
            while (rs.next()) {
                String name = rs.getString("TABLE_NAME");
                tables.add(name);
                System.out.println("{\"table\": " + json(schema + "." + name)
                        + ", \"type\": " + json(rs.getString("TABLE_TYPE"))
                        + ", \"remarks\": " + json(rs.getString("REMARKS")) + "}");
            }
        }
        for (String table : tables) {
            String tablePattern = table.replace(esc, esc + esc).replace("_", esc + "_").replace("%", esc + "%");
            try (ResultSet rs = meta.getColumns(catalog, pattern, tablePattern, "%")) {
                while (rs.next()) {
                    System.out.println("{\"column\": "
                            + json(schema + "." + rs.getString("TABLE_NAME") + "." + rs.getString("COLUMN_NAME"))
                            + ", \"type\": " + json(rs.getString("TYPE_NAME"))
                            + ", \"remarks\": " + json(rs.getString("REMARKS")) + "}");
                }
            }
        }
    }

    static String value(Object v) {
        if (v == null) {
            return "null";
        }
        if (v instanceof Boolean) {
            return v.toString();
        }
        if (v instanceof Double || v instanceof Float) {
            double d = ((Number) v).doubleValue();
            return Double.isFinite(d) ? Double.toString(d) : json(Double.toString(d));
        }
        if (v instanceof BigDecimal) {
            return json(((BigDecimal) v).toPlainString()); // as text: a double would round it
        }
        if (v instanceof Number) {
            return v.toString();
        }
        if (v instanceof Timestamp) {
            return json(((Timestamp) v).toLocalDateTime().toString());
        }
        if (v instanceof java.sql.Date) {
            return json(((java.sql.Date) v).toLocalDate().toString());
        }
        return json(v.toString());
    }

    static String json(String s) {
        if (s == null) {
            return "null";
        }
        StringBuilder b = new StringBuilder("\"");
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                default -> {
                    if (c < 0x20 || c > 0x7e) {
                        // ASCII only: stdout's charset is the platform's, maybe not UTF-8
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
                }
            }
        }
        return b.append("\"").toString();
    }
}
