// The MCP core (docs/mcp.md): JSON-RPC 2.0 messages in, replies out, the
// way the MCP specification frames them: initialize (with protocol-version
// negotiation), notifications/initialized, ping, tools/list, tools/call
// (tools.h), and JSON-RPC errors for everything else. Transport-free: the
// stdio transport (the CLI relays lines to the daemon's socket) and the
// Streamable HTTP transport (/mcp) both hand it message text.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "mcp/backend.h"

namespace wb::mcp {

// The protocol revisions served, newest first. The official TypeScript SDK
// (1.32) sends 2025-11-25.
inline constexpr const char* kProtocolVersions[] = {"2025-11-25", "2025-06-18", "2025-03-26",
                                                    "2024-11-05"};
inline constexpr const char* kLatestProtocolVersion = kProtocolVersions[0];
bool IsSupportedVersion(std::string_view v);
// The version an initialize answers: the client's when served, else ours latest.
std::string NegotiateVersion(std::string_view requested);

// JSON-RPC error codes.
inline constexpr int kParseError = -32700;
inline constexpr int kInvalidRequest = -32600;
inline constexpr int kMethodNotFound = -32601;
inline constexpr int kInvalidParams = -32602;
inline constexpr int kInternalError = -32603;

// {"jsonrpc":"2.0","id":id,"error":{"code":..,"message":..}}
nlohmann::json ErrorReply(const nlohmann::json& id, int code, const std::string& message);
// Serialized with invalid UTF-8 replaced (command output may hold any bytes).
std::string Dump(const nlohmann::json& j);

// What one connection (stdio) or Mcp-Session-Id (HTTP) has negotiated.
struct Session {
  std::string protocol_version;  // "" until initialize
  bool initialized = false;      // notifications/initialized seen
};

// What a transport needs to know of a message before handling it.
struct MessageInfo {
  bool valid = false;        // JSON, an object or a non-empty array
  bool initialize = false;   // an initialize request (alone)
  bool has_request = false;  // at least one request (needs a reply)
};
MessageInfo Inspect(std::string_view text);

class Server {
 public:
  explicit Server(Backend& backend) : backend_(backend) {}
  // One message or batch; the reply text, or "" when none is due (only
  // notifications or responses). Never throws.
  boost::asio::awaitable<std::string> Handle(std::string text, std::shared_ptr<Session> session);

 private:
  boost::asio::awaitable<nlohmann::json> HandleOne(nlohmann::json msg, Session& session);
  Backend& backend_;
};

// The Streamable HTTP transport's sessions (Mcp-Session-Id): created by an
// initialize, ended by DELETE, or dropped after kSessionIdle unused; at most
// kMaxSessions (the least recently used goes first).
class SessionTable {
 public:
  static constexpr size_t kMaxSessions = 1024;
  static constexpr std::chrono::hours kSessionIdle{24};
  using Clock = std::chrono::steady_clock;

  // A new session and its id (32 hex digits).
  [[nodiscard]] Result<std::pair<std::string, std::shared_ptr<Session>>> Create(
      Clock::time_point now = Clock::now());
  // nullptr when unknown (never created, ended or expired).
  std::shared_ptr<Session> Find(const std::string& id, Clock::time_point now = Clock::now());
  bool Remove(const std::string& id);
  size_t size() const { return sessions_.size(); }

 private:
  struct Entry {
    std::shared_ptr<Session> session;
    Clock::time_point used;
  };
  void Expire(Clock::time_point now);
  std::map<std::string, Entry> sessions_;
};

}  // namespace wb::mcp

namespace wb::mcp {

// How a Streamable HTTP POST's reply goes out, from its Accept header
// (absent: JSON): kJson when application/json (or */*) is acceptable,
// kSse when only text/event-stream is, kNone when neither (406).
enum class ReplyFormat { kJson, kSse, kNone };
ReplyFormat ChooseReplyFormat(std::optional<std::string_view> accept);
// One server-sent event carrying a JSON-RPC message.
std::string SseEvent(std::string_view json);

}  // namespace wb::mcp
