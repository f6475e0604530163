"""hrms: the HR/ERP system built on eventbus.

``hrms.events`` is the event catalog (the seeds' ``shared/kafka/schemas.py``: event
types, payload and envelope models, factories) and ``hrms.topics`` the topic layout.
Import them directly; this package module imports nothing.
"""
