"""Room permissions: moderate_room and announce (with Django's view_room).

Staff users could moderate before these permissions existed: every staff user
of an existing database is given moderate_room, so nobody loses what they had.
"""

from django.conf import settings
from django.db import migrations


def grant_moderation_to_staff(apps, schema_editor):
    # Permissions are normally created after migrate (post_migrate): make this
    # one now so it can be granted.
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    User = apps.get_model(settings.AUTH_USER_MODEL)  # a swapped user model too
    fields = {field.name for field in User._meta.get_fields()}
    if not {"is_staff", "user_permissions"} <= fields:
        return  # a user model without Django's staff flag or permissions: nothing to carry over
    content_type, _ = ContentType.objects.get_or_create(app_label="presence", model="room")
    permission, _ = Permission.objects.get_or_create(
        content_type=content_type,
        codename="moderate_room",
        defaults={"name": "Can kick, mute and lock in rooms"},
    )
    for user in User.objects.filter(is_staff=True):
        user.user_permissions.add(permission)


class Migration(migrations.Migration):
    dependencies = [
        ("presence", "0002_moderation"),
        ("auth", "0012_alter_user_first_name_max_length"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="room",
            options={
                "ordering": ["id"],
                "permissions": [
                    ("moderate_room", "Can kick, mute and lock in rooms"),
                    ("announce", "Can post chat into rooms as the server"),
                ],
            },
        ),
        migrations.RunPython(grant_moderation_to_staff, migrations.RunPython.noop),
    ]
