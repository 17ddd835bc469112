"""Fulfillment tables: the routing view of each order, tasks and their lines, the audit log,
the manual queue, customer notifications and today's capacity cuts.

Orders, stores and inventory belong to the core domains; these tables refer to them by ID
without foreign keys, so each component migrates on its own.
"""

from storelens.cloud.db import migrations

COMPONENT = "fulfillment"

MIGRATIONS = migrations(
    COMPONENT,
    [
        """
        CREATE TABLE fulfillment_orders (
            order_id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            dest_lat {REAL},
            dest_lon {REAL},
            pickup_store TEXT,
            allow_brokering {BOOL} NOT NULL DEFAULT 0,
            channel TEXT NOT NULL,
            recipient TEXT,
            created_at {REAL} NOT NULL
        );
        CREATE TABLE fulfillment_tasks (
            id TEXT PRIMARY KEY,
            order_id TEXT NOT NULL,
            store_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            state TEXT NOT NULL,
            version INTEGER NOT NULL DEFAULT 1,
            rule TEXT,
            created_at {REAL} NOT NULL,
            updated_at {REAL} NOT NULL,
            accept_by {REAL},
            pickup_by {REAL},
            carrier TEXT,
            tracking_number TEXT,
            reason TEXT
        );
        CREATE INDEX fulfillment_tasks_store_state ON fulfillment_tasks (store_id, state);
        CREATE INDEX fulfillment_tasks_order ON fulfillment_tasks (order_id);
        CREATE INDEX fulfillment_tasks_state_accept ON fulfillment_tasks (state, accept_by);
        CREATE TABLE fulfillment_task_items (
            task_id TEXT NOT NULL REFERENCES fulfillment_tasks (id) ON DELETE CASCADE,
            sku TEXT NOT NULL,
            quantity INTEGER NOT NULL CHECK (quantity > 0),
            PRIMARY KEY (task_id, sku)
        );
        CREATE TABLE fulfillment_audit (
            id {ID},
            task_id TEXT,
            order_id TEXT NOT NULL,
            at {REAL} NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            from_state TEXT,
            to_state TEXT,
            reason TEXT,
            request_id TEXT,
            detail TEXT
        );
        CREATE INDEX fulfillment_audit_order ON fulfillment_audit (order_id, id);
        CREATE UNIQUE INDEX fulfillment_audit_request ON fulfillment_audit (task_id, request_id);
        CREATE TABLE fulfillment_manual_queue (
            id {ID},
            order_id TEXT NOT NULL,
            created_at {REAL} NOT NULL,
            reason TEXT NOT NULL,
            lines TEXT NOT NULL,
            considered TEXT NOT NULL,
            resolved_at {REAL},
            resolved_by TEXT,
            resolution TEXT
        );
        CREATE INDEX fulfillment_manual_queue_open ON fulfillment_manual_queue (resolved_at);
        CREATE TABLE fulfillment_notifications (
            id {ID},
            order_id TEXT NOT NULL,
            task_id TEXT,
            channel TEXT NOT NULL,
            recipient TEXT,
            kind TEXT NOT NULL,
            message TEXT NOT NULL,
            created_at {REAL} NOT NULL,
            sent_at {REAL}
        );
        CREATE INDEX fulfillment_notifications_order ON fulfillment_notifications (order_id);
        CREATE TABLE fulfillment_capacity_cuts (
            store_id TEXT NOT NULL,
            day TEXT NOT NULL,
            capacity INTEGER NOT NULL,
            at {REAL} NOT NULL,
            PRIMARY KEY (store_id, day)
        )
        """,
        # v2: the rejection rate looks back over a window of task creation times.
        "CREATE INDEX fulfillment_tasks_created ON fulfillment_tasks (created_at)",
    ],
)
