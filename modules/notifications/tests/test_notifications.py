"""The notifications module through sdk.testing, fed by the real users module."""

from notifications.v1 import notifications_pb2, notifications_pb2_grpc
from sdk.testing import eventually
from users.v1 import users_pb2, users_pb2_grpc


async def test_records_a_welcome_for_every_new_user(module_harness):
    async with module_harness("modules/notifications") as notifications, module_harness("modules/users") as users:
        await users.stub(users_pb2_grpc.UsersStub).CreateUser(
            users_pb2.CreateUserRequest(name="Ada", email="ada@x.org")
        )
        stub = notifications.stub(notifications_pb2_grpc.NotificationsStub)

        async def listed_notifications() -> list[notifications_pb2.Notification]:
            return list((await stub.ListNotifications(notifications_pb2.ListNotificationsRequest())).notifications)

        listed = await eventually(listed_notifications, "the welcome notification")
    assert [(n.event_type, n.text) for n in listed] == [("user.created", "Welcome, Ada!")]
