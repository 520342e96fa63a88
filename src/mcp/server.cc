#include "mcp/server.h"

#include "base/fs.h"
#include "base/json.h"
#include "mcp/tools.h"

namespace wb::mcp {

namespace asio = boost::asio;
using nlohmann::json;

bool IsSupportedVersion(std::string_view v) {
  for (const char* s : kProtocolVersions) {
    if (v == s) return true;
  }
  return false;
}

std::string NegotiateVersion(std::string_view requested) {
  if (IsSupportedVersion(requested)) return std::string(requested);
  return kLatestProtocolVersion;
}

json ErrorReply(const json& id, int code, const std::string& message) {
  return {{"jsonrpc", "2.0"}, {"id", id}, {"error", {{"code", code}, {"message", message}}}};
}

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

namespace {

bool IsRequestObject(const json& m) {
  return m.is_object() && m.contains("method") && m.contains("id");
}

// A valid JSON-RPC id: a string or an integer (MCP forbids null).
bool ValidId(const json& id) { return id.is_string() || id.is_number_integer(); }

json Reply(const json& id, json result) {
  return {{"jsonrpc", "2.0"}, {"id", id}, {"result", std::move(result)}};
}

const char* kInstructions =
    "warmbox runs code in isolated, disposable Linux sandboxes. For one-off code use run_code "
    "or run_command without a sandbox_id (a fresh sandbox per call). To keep files and "
    "installed packages across calls, create_sandbox once, pass its sandbox_id to every call, "
    "and kill_sandbox at the end. Files move in and out with write_file, read_file and "
    "list_files; read_file shows images.";

}  // namespace

MessageInfo Inspect(std::string_view text) {
  MessageInfo info;
  auto j = ParseJsonBounded(text, "MCP message");
  if (!j.ok()) return info;
  if (j->is_object()) {
    info.valid = true;
    info.has_request = IsRequestObject(*j);
    const json* m = j->contains("method") ? &(*j)["method"] : nullptr;
    info.initialize = info.has_request && m->is_string() && m->get<std::string>() == "initialize";
    return info;
  }
  if (j->is_array() && !j->empty()) {
    info.valid = true;
    for (const auto& m : *j) info.has_request |= IsRequestObject(m);
  }
  return info;
}

asio::awaitable<std::string> Server::Handle(std::string text, std::shared_ptr<Session> session) {
  auto parsed = ParseJsonBounded(text, "MCP message");
  if (!parsed.ok()) {
    co_return Dump(ErrorReply(nullptr, kParseError, "Parse error: " + parsed.error().ToString()));
  }
  json msg = std::move(*parsed);
  if (msg.is_array()) {
    // A batch (protocol 2025-03-26): each message in turn, the replies in one array.
    if (msg.empty()) co_return Dump(ErrorReply(nullptr, kInvalidRequest, "empty batch"));
    json replies = json::array();
    for (size_t i = 0; i < msg.size(); ++i) {
      json one = std::move(msg[i]);
      json r = co_await HandleOne(std::move(one), *session);
      if (!r.is_null()) replies.push_back(std::move(r));
    }
    if (replies.empty()) co_return "";
    co_return Dump(replies);
  }
  json r = co_await HandleOne(std::move(msg), *session);
  if (r.is_null()) co_return "";
  co_return Dump(r);
}

// Returns the reply, or null when none is due.
asio::awaitable<json> Server::HandleOne(json msg, Session& session) {
  if (!msg.is_object()) {
    co_return ErrorReply(nullptr, kInvalidRequest, "Invalid Request: a message is a JSON object");
  }
  json id = msg.contains("id") ? msg["id"] : json();
  const bool has_id = msg.contains("id");
  if (has_id && !ValidId(id)) {
    co_return ErrorReply(nullptr, kInvalidRequest,
                         "Invalid Request: \"id\" must be a string or an integer");
  }
  auto version = msg.find("jsonrpc");
  if (version == msg.end() || *version != "2.0") {
    co_return ErrorReply(id, kInvalidRequest, "Invalid Request: \"jsonrpc\" must be \"2.0\"");
  }
  auto method_it = msg.find("method");
  if (method_it == msg.end()) {
    // A response to a request of ours: we send none, so there is nothing to match.
    if (has_id && (msg.contains("result") || msg.contains("error"))) co_return json();
    co_return ErrorReply(id, kInvalidRequest, "Invalid Request: \"method\" is missing");
  }
  if (!method_it->is_string()) {
    co_return ErrorReply(id, kInvalidRequest, "Invalid Request: \"method\" must be a string");
  }
  const std::string method = method_it->get<std::string>();
  json params = msg.contains("params") ? msg["params"] : json::object();
  if (params.is_null()) params = json::object();

  if (!has_id) {
    // Notifications get no reply, whatever they are.
    if (method == "notifications/initialized") session.initialized = true;
    co_return json();
  }
  if (!params.is_object()) {
    co_return ErrorReply(id, kInvalidParams, "Invalid params: \"params\" must be an object");
  }
  if (method == "initialize") {
    auto pv = params.find("protocolVersion");
    if (pv == params.end() || !pv->is_string()) {
      co_return ErrorReply(id, kInvalidParams,
                           "Invalid params: initialize needs \"protocolVersion\" (a string)");
    }
    session.protocol_version = NegotiateVersion(pv->get<std::string>());
    json result = {
        {"protocolVersion", session.protocol_version},
        {"capabilities", {{"tools", {{"listChanged", false}}}}},
        {"serverInfo", {{"name", "warmbox"}, {"title", "warmbox sandboxes"}, {"version", "0.1.0"}}},
        {"instructions", kInstructions}};
    co_return Reply(id, std::move(result));
  }
  if (method == "ping") co_return Reply(id, json::object());
  if (method == "tools/list") {
    co_return Reply(id, {{"tools", ToolList()}});
  }
  if (method == "tools/call") {
    auto name = params.find("name");
    if (name == params.end() || !name->is_string()) {
      co_return ErrorReply(id, kInvalidParams,
                           "Invalid params: tools/call needs \"name\" (a string)");
    }
    const std::string tool = name->get<std::string>();
    if (!IsTool(tool)) {
      co_return ErrorReply(id, kInvalidParams,
                           "Unknown tool: " + tool + " (tools/list names the tools)");
    }
    json args = params.contains("arguments") ? params["arguments"] : json::object();
    if (!args.is_object() && !args.is_null()) {
      co_return ErrorReply(id, kInvalidParams, "Invalid params: \"arguments\" must be an object");
    }
    json result;
    try {
      result = co_await CallTool(backend_, tool, std::move(args));
    } catch (const std::exception& e) {
      co_return ErrorReply(id, kInternalError, std::string("Internal error: ") + e.what());
    }
    co_return Reply(id, std::move(result));
  }
  co_return ErrorReply(id, kMethodNotFound, "Method not found: " + method);
}

// --- sessions ---------------------------------------------------------------------

Result<std::pair<std::string, std::shared_ptr<Session>>> SessionTable::Create(
    Clock::time_point now) {
  Expire(now);
  if (sessions_.size() >= kMaxSessions) {
    auto oldest = sessions_.begin();
    for (auto it = sessions_.begin(); it != sessions_.end(); ++it) {
      if (it->second.used < oldest->second.used) oldest = it;
    }
    sessions_.erase(oldest);
  }
  std::string id = WB_TRY(RandomHex(16));
  auto s = std::make_shared<Session>();
  sessions_[id] = Entry{s, now};
  return std::pair{id, s};
}

std::shared_ptr<Session> SessionTable::Find(const std::string& id, Clock::time_point now) {
  Expire(now);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return nullptr;
  it->second.used = now;
  return it->second.session;
}

bool SessionTable::Remove(const std::string& id) { return sessions_.erase(id) > 0; }

void SessionTable::Expire(Clock::time_point now) {
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    if (now - it->second.used > kSessionIdle) {
      it = sessions_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace wb::mcp

namespace wb::mcp {

ReplyFormat ChooseReplyFormat(std::optional<std::string_view> accept) {
  if (!accept || accept->empty()) return ReplyFormat::kJson;
  bool json_ok = false, sse_ok = false;
  std::string_view rest = *accept;
  while (!rest.empty()) {
    size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    item = item.substr(0, item.find(';'));
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    std::string lower(item);
    for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower == "application/json" || lower == "application/*" || lower == "*/*") json_ok = true;
    if (lower == "text/event-stream" || lower == "text/*") sse_ok = true;
  }
  if (json_ok) return ReplyFormat::kJson;
  if (sse_ok) return ReplyFormat::kSse;
  return ReplyFormat::kNone;
}

std::string SseEvent(std::string_view json) {
  // A JSON text has no raw newline, so one data line carries it.
  return "event: message\ndata: " + std::string(json) + "\n\n";
}

}  // namespace wb::mcp
