"""`storelens bench ...`: one module per benchmark command, named after it, plus the JSON
report writer they share."""
