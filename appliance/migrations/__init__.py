"""Schema migrations, applied in name order by appliance.db.migrate().

Each module `mNNNN_<what>.py` defines `apply(db)`. Never edit an applied migration: add a new one.
Migrations create tables from explicit snapshots of the models they need (not the live models),
so that later model changes do not rewrite history.
"""
