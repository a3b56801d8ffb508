import GRDB

/// The database schema, created and upgraded by GRDB's `DatabaseMigrator`.
/// Each migration is append-only: never edit one that has shipped, add a new one.
enum Schema {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE account (
                    key TEXT PRIMARY KEY NOT NULL,
                    name TEXT NOT NULL,
                    password_hash TEXT NOT NULL,
                    last_read INTEGER NOT NULL DEFAULT 0,
                    created_at INTEGER NOT NULL
                );
                CREATE TABLE room_group (
                    id INTEGER PRIMARY KEY NOT NULL,
                    key TEXT NOT NULL UNIQUE,
                    name TEXT NOT NULL,
                    owner TEXT NOT NULL REFERENCES account(key),
                    invite_only INTEGER NOT NULL DEFAULT 0,
                    created_at INTEGER NOT NULL
                );
                CREATE TABLE group_member (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    group_id INTEGER NOT NULL REFERENCES room_group(id) ON DELETE CASCADE,
                    user TEXT NOT NULL REFERENCES account(key),
                    UNIQUE (group_id, user)
                );
                CREATE TABLE group_invitation (
                    group_id INTEGER NOT NULL REFERENCES room_group(id) ON DELETE CASCADE,
                    user TEXT NOT NULL REFERENCES account(key),
                    invited_by TEXT NOT NULL,
                    PRIMARY KEY (group_id, user)
                );
                CREATE TABLE message (
                    id INTEGER PRIMARY KEY NOT NULL,
                    time INTEGER NOT NULL,
                    sender TEXT NOT NULL,
                    sender_key TEXT NOT NULL,
                    room TEXT NOT NULL,
                    room_name TEXT NOT NULL,
                    peer_key TEXT,
                    text TEXT NOT NULL
                );
                CREATE INDEX message_room ON message(room, id);
                CREATE INDEX message_peer ON message(peer_key, id) WHERE peer_key IS NOT NULL;
                CREATE INDEX message_sender_direct ON message(sender_key, id) WHERE peer_key IS NOT NULL;
                -- Group ids are never reused, so a deleted group's messages never reappear.
                CREATE TABLE counter (name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL);
                INSERT INTO counter VALUES ('group_id', 0);
                """)
        }
        migrator.registerMigration("v2 login tokens") { db in
            try db.execute(sql: """
                CREATE TABLE login_token (
                    hash TEXT PRIMARY KEY NOT NULL,
                    user TEXT NOT NULL REFERENCES account(key) ON DELETE CASCADE,
                    created_at INTEGER NOT NULL,
                    last_used INTEGER NOT NULL
                );
                CREATE INDEX login_token_user ON login_token(user, last_used);
                """)
        }
        migrator.registerMigration("v3 operating") { db in
            try db.execute(sql: """
                CREATE TABLE ban (
                    kind TEXT NOT NULL,          -- 'account' or 'address'
                    target TEXT NOT NULL,        -- account key or CIDR range
                    name TEXT NOT NULL,
                    reason TEXT NOT NULL,
                    banned_by TEXT NOT NULL,
                    since INTEGER NOT NULL,
                    until INTEGER,
                    PRIMARY KEY (kind, target)
                );
                CREATE TABLE setting (name TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
                CREATE INDEX message_time ON message(time);
                """)
        }
        return migrator
    }
}
