"""The notifications module through sdk.testing, fed by the real users module."""

import grpc

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


async def test_a_watch_gets_what_was_recorded_then_each_new_one_and_ends_when_the_module_stops(module_harness):
    async with module_harness("modules/notifications") as notifications, module_harness("modules/users") as users:
        create = users.stub(users_pb2_grpc.UsersStub).CreateUser
        await create(users_pb2.CreateUserRequest(name="Ada", email="ada@x.org"))
        stub = notifications.stub(notifications_pb2_grpc.NotificationsStub)
        await eventually(
            lambda: _listed_texts(stub),
            "Ada's welcome recorded before the watch begins",
        )
        watch = stub.WatchNotifications(notifications_pb2.WatchNotificationsRequest())
        assert (await watch.read()).notification.text == "Welcome, Ada!"  # recorded before: replayed
        await create(users_pb2.CreateUserRequest(name="Grace", email="grace@x.org"))
        assert (await watch.read()).notification.text == "Welcome, Grace!"  # recorded while watched

        stopped = await notifications.stop(grace_seconds=60)
        assert not stopped.forced, "the watch ended when the module began to stop, not at the grace"
        assert await watch.read() is grpc.aio.EOF
        assert await watch.code() is grpc.StatusCode.OK


async def test_a_watch_for_one_recipient_gets_only_theirs(module_harness):
    async with module_harness("modules/notifications") as notifications, module_harness("modules/users") as users:
        create = users.stub(users_pb2_grpc.UsersStub).CreateUser
        ada = (await create(users_pb2.CreateUserRequest(name="Ada", email="ada@x.org"))).user
        stub = notifications.stub(notifications_pb2_grpc.NotificationsStub)
        watch = stub.WatchNotifications(notifications_pb2.WatchNotificationsRequest(recipient=ada.id))
        await create(users_pb2.CreateUserRequest(name="Grace", email="grace@x.org"))
        await eventually(lambda: _listed_texts(stub, count=2), "both welcomes recorded")
        await notifications.stop()  # the watch ends: all it was to send is read below
        assert [response.notification.text async for response in watch] == ["Welcome, Ada!"]


async def _listed_texts(stub: notifications_pb2_grpc.NotificationsStub, count: int = 1) -> list[str] | None:
    listed = await stub.ListNotifications(notifications_pb2.ListNotificationsRequest())
    texts = [notification.text for notification in listed.notifications]
    return texts if len(texts) >= count else None
