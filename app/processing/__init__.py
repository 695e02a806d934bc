"""From a stored update to a queued reply.

`dispatcher` claims each chat's oldest unfinished update and runs it through `pipeline` (user,
dedupe, history, agent, reply), remembering each step in `progress`; `history` reads and
writes the User Service's chat history; `callback_acker` stops a pressed button's spinner at
once; `keyboards` turns the agent's actions into inline keyboards.
"""
