package store

import "context"

// PutTailnetNode stores a tailnet node's record (JSON) under its node key.
func (db *DB) PutTailnetNode(ctx context.Context, nodeKey string, record []byte) error {
	_, err := db.Pool.Exec(ctx, `INSERT INTO tailnet_nodes (node_key, identity) VALUES ($1, $2)
		ON CONFLICT (node_key) DO UPDATE SET identity = excluded.identity, updated_at = now()`, nodeKey, record)
	return err
}

// TailnetNode returns the record stored under nodeKey, or ErrNotFound.
func (db *DB) TailnetNode(ctx context.Context, nodeKey string) ([]byte, error) {
	var b []byte
	err := db.Pool.QueryRow(ctx, `SELECT identity FROM tailnet_nodes WHERE node_key = $1`, nodeKey).Scan(&b)
	return b, notFound(err)
}

// DeleteTailnetNode removes the record under nodeKey, if any.
func (db *DB) DeleteTailnetNode(ctx context.Context, nodeKey string) error {
	_, err := db.Pool.Exec(ctx, `DELETE FROM tailnet_nodes WHERE node_key = $1`, nodeKey)
	return err
}

// DeleteTailnetNodesOfKind removes every record whose identity is of kind
// (the record's Identity.Kind, as tailnet.StoredNode marshals it) and
// returns how many it removed.
func (db *DB) DeleteTailnetNodesOfKind(ctx context.Context, kind string) (int, error) {
	tag, err := db.Pool.Exec(ctx, `DELETE FROM tailnet_nodes WHERE identity->'Identity'->>'Kind' = $1`, kind)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}
