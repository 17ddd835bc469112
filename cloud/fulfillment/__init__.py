"""Ship-from-store and pick-up-in-store: routing online orders to stores (`rules`, `router`),
the store's task workflow (`workflow`, `states`), deadlines (`deadlines`), the POS and ops
read side (`tasks`) and the link to the orders domain (`intake`, `progress`).

Importing the package registers the fulfillment tables and hooks routing onto order creation,
the same way every domain registers its migrations when `cloud/store/schema.py` imports it.
"""

from storelens.cloud.fulfillment import intake, tables

intake.register()

__all__ = ["intake", "tables"]
