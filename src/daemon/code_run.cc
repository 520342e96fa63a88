#include "daemon/code_run.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <nlohmann/json.hpp>

#include "base/json.h"
#include "daemon/e2b/port_proxy.h"

namespace wb::daemon {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using nlohmann::json;

namespace {

Error Bad(const std::string& field, const std::string& why) {
  return Fail(ErrorCode::kInvalidArgument, "bad request", field, why);
}

constexpr size_t kMaxErrorBody = 4096;
constexpr size_t kMaxLine = 64 << 20;  // a result's PNG is one line: generous

}  // namespace

Result<CodeRequest> ParseCodeRequest(std::string_view text) {
  auto parsed = ParseJsonBounded(text, "code request");
  if (!parsed.ok()) return Bad("body", "expected a JSON object: " + parsed.error().detail);
  const json& j = *parsed;
  if (!j.is_object()) return Bad("body", "expected a JSON object");
  CodeRequest r;
  for (const auto& [k, v] : j.items()) {
    if (k == "code") {
      if (!v.is_string()) return Bad("code", "expected a string");
      r.code = v;
    } else if (k == "language" || k == "context_id") {
      if (!v.is_null() && !v.is_string()) return Bad(k, "expected a string");
      if (v.is_string()) (k == "language" ? r.language : r.context_id) = v.get<std::string>();
    } else if (k == "env_vars") {
      if (v.is_null()) continue;
      if (!v.is_object()) return Bad("env_vars", "expected an object of strings");
      for (const auto& [ek, ev] : v.items()) {
        if (!ev.is_string() || ek.empty() || ek.find('=') != std::string::npos)
          return Bad("env_vars", "expected an object of strings, got key '" + ek + "'");
        r.env_vars[ek] = ev.get<std::string>();
      }
    } else if (k == "timeout_ms") {
      if (!v.is_number_unsigned() || v.get<uint64_t>() > 86400000ull * 7)
        return Bad("timeout_ms", "expected milliseconds, 0 to 604800000");
      r.timeout_ms = v.get<uint64_t>();
    } else {
      return Bad(k, "unknown field (expected code, language, context_id, env_vars, timeout_ms)");
    }
  }
  if (!j.contains("code")) return Bad("code", "missing");
  if (!r.language.empty() && !r.context_id.empty())
    return Bad("language", "give a language or a context_id, not both");
  return r;
}

std::string ExecuteBody(const CodeRequest& r) {
  json j = {{"code", r.code}};
  if (!r.language.empty()) j["language"] = r.language;
  if (!r.context_id.empty()) j["context_id"] = r.context_id;
  if (!r.env_vars.empty()) j["env_vars"] = r.env_vars;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// --- the response reader --------------------------------------------------------

struct NdjsonResponseReader::Impl {
  http::response_parser<http::string_body> p;
  std::string pending;  // body bytes of an unfinished line
  std::string raw;      // response bytes the parser has not consumed yet
};

NdjsonResponseReader::NdjsonResponseReader() : impl_(std::make_unique<Impl>()) {
  impl_->p.eager(true);
  impl_->p.body_limit(boost::none);
  impl_->p.header_limit(64 << 10);
}
NdjsonResponseReader::~NdjsonResponseReader() = default;

bool NdjsonResponseReader::head_done() const { return impl_->p.is_header_done(); }
unsigned NdjsonResponseReader::status() const {
  return head_done() ? impl_->p.get().result_int() : 0;
}
bool NdjsonResponseReader::done() const { return impl_->p.is_done(); }

void NdjsonResponseReader::Take(std::vector<std::string>& lines, bool last) {
  std::string& body = impl_->p.get().body();
  const bool ok = status() >= 200 && status() < 300;
  if (!ok) {
    if (error_body_.size() < kMaxErrorBody)
      error_body_.append(body, 0, std::min(body.size(), kMaxErrorBody - error_body_.size()));
    body.clear();
    return;
  }
  std::string& pend = impl_->pending;
  pend += body;
  body.clear();
  size_t start = 0;
  for (;;) {
    size_t nl = pend.find('\n', start);
    if (nl == std::string::npos) break;
    std::string line = pend.substr(start, nl - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) lines.push_back(std::move(line));
    start = nl + 1;
  }
  pend.erase(0, start);
  if (last && !pend.empty()) {
    lines.push_back(std::move(pend));
    pend.clear();
  }
}

Result<void> NdjsonResponseReader::Feed(std::string_view bytes, std::vector<std::string>& lines) {
  // Beast's parser keeps nothing it has not consumed (a partial head or
  // chunk header): those bytes wait here for the next piece.
  std::string& raw = impl_->raw;
  raw.append(bytes);
  while (!raw.empty() && !impl_->p.is_done()) {
    boost::system::error_code ec;
    size_t used = impl_->p.put(asio::buffer(raw.data(), raw.size()), ec);
    if (ec == http::error::need_more) ec = {};
    if (ec) return Fail(ErrorCode::kUnavailable, "code interpreter", "response", ec.message());
    raw.erase(0, used);
    if (impl_->p.is_header_done()) Take(lines, false);
    if (used == 0) break;
  }
  if (impl_->pending.size() > kMaxLine || raw.size() > kMaxLine)
    return Fail(ErrorCode::kUnavailable, "code interpreter", "response", "a line over 64 MiB");
  return Ok();
}

Result<void> NdjsonResponseReader::End(std::vector<std::string>& lines) {
  if (!impl_->p.is_header_done()) {
    return Fail(ErrorCode::kUnavailable, "code interpreter", "response",
                "the server closed the connection without an answer");
  }
  if (!impl_->p.is_done()) {
    // A close-delimited body ends here; a chunked or sized one must not.
    boost::system::error_code ec;
    impl_->p.put_eof(ec);
    if (ec) {
      return Fail(ErrorCode::kUnavailable, "code interpreter", "response",
                  "the server closed the connection mid-answer");
    }
  }
  Take(lines, true);
  return Ok();
}

// --- over the agent ---------------------------------------------------------------

asio::awaitable<Result<void>> RunCode(LiveService& live, std::string id, CodeRequest r,
                                      CodeLineFn on_line) {
  auto conn = co_await e2b::OpenPortTunnel(live, id, kCodeInterpreterPort);
  if (!conn.ok()) {
    Error e = conn.error();
    if (e.err == ECONNREFUSED) {
      e.detail = "no code interpreter listens on port " + std::to_string(kCodeInterpreterPort) +
                 " in sandbox " + id +
                 " (its image starts none: docs/services.md, or it has not started yet)";
    }
    co_return e;
  }
  std::shared_ptr<pool::AgentConn> agent(std::move(*conn));
  const std::string body = ExecuteBody(r);
  const std::string request =
      "POST /execute HTTP/1.1\r\nHost: localhost:49999\r\n"
      "Content-Type: application/json\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
  if (auto s = co_await agent->Send(proto::FrameType::kStdin, request); !s.ok())
    co_return s.error().WithCode(ErrorCode::kUnavailable);
  // The deadline closes the tunnel: the server sees its client go and
  // interrupts the execution.
  auto timed_out = std::make_shared<bool>(false);
  std::shared_ptr<asio::steady_timer> deadline;
  if (r.timeout_ms) {
    deadline = std::make_shared<asio::steady_timer>(co_await asio::this_coro::executor,
                                                    std::chrono::milliseconds(r.timeout_ms));
    deadline->async_wait([agent, timed_out](boost::system::error_code ec) {
      if (ec) return;
      *timed_out = true;
      agent->Close();
    });
  }
  struct CancelAtEnd {
    std::shared_ptr<asio::steady_timer> t;
    ~CancelAtEnd() {
      if (t) t->cancel();
    }
  } cancel_at_end{deadline};
  NdjsonResponseReader reader;
  std::vector<std::string> lines;
  for (;;) {
    auto f = co_await agent->ReadFrame();
    if (*timed_out) {
      co_return Fail(ErrorCode::kDeadlineExceeded, "run code", id,
                     "timed out after " + std::to_string(r.timeout_ms) + " ms");
    }
    if (!f.ok()) co_return f.error().WithCode(ErrorCode::kUnavailable);
    Result<void> fed = Ok();
    bool end = false;
    if (f->type == proto::FrameType::kStdout) {
      fed = reader.Feed(f->payload, lines);
    } else if (f->type == proto::FrameType::kFileEnd) {
      fed = reader.End(lines);
      end = true;
    } else {
      co_return Fail(ErrorCode::kUnavailable, "run code", id,
                     "the tunnel to the code interpreter failed: " + f->payload);
    }
    if (!fed.ok()) co_return fed.error();
    if (reader.head_done() && (reader.status() < 200 || reader.status() >= 300)) {
      if (!reader.done() && !end) continue;
      const unsigned st = reader.status();
      co_return Fail(st == 404 ? ErrorCode::kNotFound : ErrorCode::kInternal, "code interpreter",
                     "HTTP " + std::to_string(st), reader.error_body());
    }
    for (auto& line : lines) {
      std::string one = std::move(line);
      if (!co_await on_line(one)) {
        agent->Close();
        co_return Fail(ErrorCode::kCancelled, "run code", id, "the client left");
      }
    }
    lines.clear();
    if (end || reader.done()) break;
  }
  agent->Close();
  co_return Ok();
}

}  // namespace wb::daemon
