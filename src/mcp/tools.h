// The MCP tools warmbox offers (docs/mcp.md): their JSON schemas and
// descriptions, written for a model, and tools/call over a Backend. The one
// tool layer of both transports (stdio through the daemon, and /mcp).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "mcp/backend.h"

namespace wb::mcp {

// The tools/list result's "tools" array.
const nlohmann::json& ToolList();
bool IsTool(std::string_view name);

// A CallToolResult: {"content":[...],"isError":bool,"structuredContent":{...}}.
// Every failure (a bad argument, a sandbox that is gone, a missing
// runtime) is a result with isError and a message the model can act on;
// never an exception. name must satisfy IsTool.
boost::asio::awaitable<nlohmann::json> CallTool(Backend& backend, std::string name,
                                                nlohmann::json args);

// One NDJSON event of a code interpreter's /execute answer (E2B's protocol)
// into out: stdout/stderr appended (capped at kMaxOutput), a result's
// representations as outputs (png/jpeg base64 as given, the rest as text;
// json dumped), an error as "Name: value\ntraceback" on stderr and exit 1.
// Other events (keepalive, end_of_execution...) and bad lines are ignored.
void AddInterpreterEvent(const std::string& line, CodeResult& out);

// The MIME type of an image by its first bytes (png, jpeg, gif, webp); "".
std::string ImageMime(std::string_view data);
bool IsUtf8(std::string_view s);

}  // namespace wb::mcp
