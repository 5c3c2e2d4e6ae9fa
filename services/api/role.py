"""The api role: the HTTP API over the views, writing through the command gateway."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from services.api.app import create_api
from services.api.gateway import CommandGateway
from services.application.history import InstanceHistory
from services.application.notification_log import NotificationLog
from services.console.session import SessionPolicy
from services.roles.role import RoleContext, within_drain_time
from services.store.schema_lock import schema_lock
from services.store.session_table import SessionTable, open_session_table


class ApiRole:
    name = "api"

    def __init__(self, context: RoleContext) -> None:
        settings, topics, views = context.settings, context.settings.topics, context.views
        self.gateway = CommandGateway(
            context.bootstrap_servers,
            topics.commands,
            topics.replies,
            head=NotificationLog(context.app).head,
            positions=lambda: [view.position() for view in views.values()],
            timeout_s=settings.write_timeout_s,
            broker_reachable=context.broker_reachable,
        )
        self.api: FastAPI = create_api(
            tokens=settings.tokens(),
            views=views,
            gateway=self.gateway,
            history=InstanceHistory(context.app),
            base_url=settings.base_url,
            sdk_secret=settings.sdk_token_secret,
            sdk_token_ttl_s=settings.sdk_token_ttl_s,
            readiness=context.readiness,
            refresh=context.refresh_health,
        )
        self.api.state.metrics = context.metrics  # read by services.api.ops_routes
        self.api.state.console_sessions.policy = SessionPolicy(
            idle_s=settings.console_session_idle_s, absolute_s=settings.console_session_max_s
        )
        self._context = context

    def _open_sessions(self) -> SessionTable:
        # The console's sessions live beside the event store, so any api replica sees them.
        with schema_lock(self._context.settings.store):
            return open_session_table(self._context.app.factory)

    async def start(self) -> None:
        sessions = await asyncio.to_thread(self._open_sessions)
        self.api.state.console_sessions.store = sessions
        await self.gateway.start()

    async def stop(self) -> None:
        await within_drain_time(self.gateway.stop(), "the HTTP gateway")
