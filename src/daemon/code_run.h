// Running code in a sandbox's code interpreter (docs/services.md, "Code"):
// the in-sandbox server on port 49999 (E2B's code-interpreter protocol:
// POST /execute answered with NDJSON lines) reached through the agent's
// tunnel (e2b/port_proxy.h's OpenPortTunnel, as the E2B port proxy), for
// `warmbox run-code`, POST /v1/sandboxes/{id}/code and the socket's
// sandbox_code.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"
#include "daemon/live_service.h"

namespace wb::daemon {

inline constexpr uint16_t kCodeInterpreterPort = 49999;

struct CodeRequest {
  std::string code;
  std::string language;                         // "": the server's default (python)
  std::string context_id;                       // "": the language's default context
  std::map<std::string, std::string> env_vars;  // this execution only
  uint64_t timeout_ms = 0;                      // 0: none; else the daemon ends it then
};

// {"code":"1+1","language":"python","context_id":"..","env_vars":{"K":"V"},"timeout_ms":N}
// (code required; language and context_id not both: E2B's rule).
[[nodiscard]] Result<CodeRequest> ParseCodeRequest(std::string_view json);
// The /execute body: {"code":..,"language"?:..,"context_id"?:..,"env_vars"?:{..}}.
std::string ExecuteBody(const CodeRequest& r);

// Feeds an HTTP/1.1 response (its bytes, as they come) and yields its body's
// complete lines. Pure, for the tests; chunked or length- or close-delimited.
class NdjsonResponseReader {
 public:
  NdjsonResponseReader();
  ~NdjsonResponseReader();
  // Consumes bytes; appends each complete line of the body (without '\n',
  // blank ones skipped) to lines. Errors: a response that is not HTTP.
  [[nodiscard]] Result<void> Feed(std::string_view bytes, std::vector<std::string>& lines);
  // The connection's end; the last unterminated line, if any, is a line.
  [[nodiscard]] Result<void> End(std::vector<std::string>& lines);
  bool head_done() const;
  unsigned status() const;
  bool done() const;
  // A non-2xx answer's body (its first 4 KiB), once done.
  const std::string& error_body() const { return error_body_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string error_body_;
  void Take(std::vector<std::string>& lines, bool last);
};

// Runs r in sandbox id: each NDJSON line of the server's answer to on_line
// as it arrives (awaited; returning false stops: the execution is
// interrupted, as E2B's server does for a client that leaves). Errors:
// not_found / failed_precondition (the sandbox), unavailable (nothing on
// 49999: "no code interpreter listens in the sandbox ..."), not_found (the
// server's 404: no such context), deadline_exceeded at timeout_ms, internal
// (another HTTP status, with its body).
using CodeLineFn = std::function<boost::asio::awaitable<bool>(std::string line)>;
[[nodiscard]] boost::asio::awaitable<Result<void>> RunCode(LiveService& live, std::string id,
                                                           CodeRequest r, CodeLineFn on_line);

}  // namespace wb::daemon
