"""The bot itself: getMe, its command list, its business connections."""

from __future__ import annotations

import json
import re
from typing import Any

from sandbox.botapi import BotApi, handler
from sandbox.errors import bad_request

COMMAND_NAME = re.compile(r"^[a-z0-9_]{1,32}$")


@handler("getMe")
async def get_me(api: BotApi, params: dict[str, Any]) -> Any:
    return {
        **api.sandbox.bot_user(),
        "can_join_groups": True,
        "can_read_all_group_messages": False,
        "supports_inline_queries": False,
        "can_connect_to_business": True,
        "has_main_web_app": False,
    }


def _key(params: dict[str, Any]) -> tuple[str, str]:
    scope = params.get("scope") or {"type": "default"}
    return json.dumps(scope, sort_keys=True), str(params.get("language_code") or "")


@handler("setMyCommands")
async def set_my_commands(api: BotApi, params: dict[str, Any]) -> Any:
    commands = params["commands"]
    if len(commands) > 100:
        raise bad_request("too many commands")
    for c in commands:
        if not COMMAND_NAME.match(str(c.get("command", ""))):
            raise bad_request("BOT_COMMAND_INVALID")
        if not 1 <= len(str(c.get("description", ""))) <= 256:
            raise bad_request("command description must be non-empty")
    clean = [{"command": c["command"], "description": c["description"]} for c in commands]
    api.sandbox.commands[_key(params)] = clean
    api.sandbox.events.publish({"type": "commands", "commands": clean})
    return True


@handler("getMyCommands")
async def get_my_commands(api: BotApi, params: dict[str, Any]) -> Any:
    return api.sandbox.commands.get(_key(params), [])


@handler("deleteMyCommands")
async def delete_my_commands(api: BotApi, params: dict[str, Any]) -> Any:
    api.sandbox.commands.pop(_key(params), None)
    return True


@handler("getBusinessConnection")
async def get_business_connection(api: BotApi, params: dict[str, Any]) -> Any:
    connection = api.sandbox.business.get(params["business_connection_id"])
    if connection is None:
        raise bad_request("BUSINESS_CONNECTION_INVALID")
    return connection.to_api()
