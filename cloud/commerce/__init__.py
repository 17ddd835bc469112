"""Commerce: stores and inventory, the catalog, members, online orders, POS sales, who is at
which till, sales attached to visits, and purchase history imported from other systems."""
