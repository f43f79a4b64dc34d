"""Give charge-fault alerts raised at the moment of the fault the slot they are about.

Such alerts named their door only in the dedup key (``charge-fault:<bank>:<door>``); the
charge-fault report now reads ``Alert.slot``, so older rows get it once, here.
"""

from django.db import migrations


def fill_slots(apps, schema_editor):
    Alert = apps.get_model("lockerhub", "Alert")
    Slot = apps.get_model("devices", "Slot")
    missing = Alert.objects.filter(kind="charge_fault", slot__isnull=True, bank__isnull=False)
    for alert in missing.only("pk", "bank_id", "dedup_key"):
        door = alert.dedup_key.rsplit(":", 1)[-1]
        if not door.isdigit():
            continue
        slot = Slot.objects.filter(bank_id=alert.bank_id, number=int(door)).first()
        if slot is not None:
            Alert.objects.filter(pk=alert.pk).update(slot=slot)


class Migration(migrations.Migration):
    dependencies = [
        ("devices", "0001_initial"),
        ("lockerhub", "0004_alert_rules_and_deliveries"),
    ]
    operations = [migrations.RunPython(fill_slots, migrations.RunPython.noop)]
