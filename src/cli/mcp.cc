// warmbox mcp: the MCP server's stdio transport (docs/mcp.md), for agents
// that start their tools as commands (Claude Desktop, Cursor...). Reads
// newline-delimited JSON-RPC messages on stdin and relays each one to the
// daemon's MCP core over its socket ({"op":"mcp"}); each reply is one line on
// stdout. Messages are served concurrently (a slow run_code does not hold a
// ping), so replies may come in another order than requests, as JSON-RPC
// allows. stdout carries nothing but MCP messages; errors go to stderr.
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "base/fd.h"
#include "cli/live_client.h"
#include "cli/verbs.h"
#include "daemon/client.h"

namespace wb::cli {
namespace {

using nlohmann::json;

// Messages in flight at once; the next line waits for a free slot.
constexpr int kMaxInFlight = 32;

class Relay {
 public:
  explicit Relay(std::string socket) : socket_(std::move(socket)) {}

  int Run() {
    std::string buf;
    char chunk[64 * 1024];
    for (;;) {
      ssize_t n = ::read(STDIN_FILENO, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      buf.append(chunk, static_cast<size_t>(n));
      size_t start = 0;
      for (size_t nl; (nl = buf.find('\n', start)) != std::string::npos; start = nl + 1) {
        Dispatch(buf.substr(start, nl - start));
      }
      buf.erase(0, start);
    }
    if (!buf.empty()) Dispatch(buf);  // a last message without its newline
    std::unique_lock lock(mu_);
    idle_.wait(lock, [&] { return in_flight_ == 0; });
    return 0;
  }

 private:
  void Dispatch(std::string line) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) return;
    {
      std::unique_lock lock(mu_);
      idle_.wait(lock, [&] { return in_flight_ < kMaxInFlight; });
      ++in_flight_;
    }
    std::thread([this, line = std::move(line)] {
      Serve(line);
      std::lock_guard lock(mu_);
      --in_flight_;
      idle_.notify_all();
    }).detach();
  }

  void Serve(const std::string& line) {
    json req = {{"op", "mcp"}, {"message", line}};
    daemon::PoolClient client(socket_);
    auto body = client.RoundTrip(req.dump(-1, ' ', false, json::error_handler_t::replace));
    std::string reply;
    std::string failure;
    if (!body.ok()) {
      failure = "cannot reach the warmbox daemon: " + body.error().ToString() +
                " (is `warmbox pool start` running, and is --socket right?)";
    } else {
      auto j = json::parse(*body, nullptr, false);
      if (j.is_object() && j.value("ok", false) && j.contains("reply") && j["reply"].is_string()) {
        reply = j["reply"].get<std::string>();
      } else if (j.is_object() && j.contains("error") && j["error"].is_string()) {
        failure = "the warmbox daemon refused: " + j["error"].get<std::string>();
      } else {
        failure = "bad reply from the warmbox daemon (is it older than this client?)";
      }
    }
    if (!failure.empty()) {
      std::fprintf(stderr, "warmbox mcp: %s\n", failure.c_str());
      // A request still gets its answer: the client must not wait forever.
      auto m = json::parse(line, nullptr, false);
      if (m.is_object() && m.contains("id") && m.contains("method")) {
        json err = {{"jsonrpc", "2.0"},
                    {"id", m["id"]},
                    {"error", {{"code", -32603}, {"message", failure}}}};
        reply = err.dump(-1, ' ', false, json::error_handler_t::replace);
      }
    }
    if (reply.empty()) return;
    reply += '\n';
    std::lock_guard lock(out_mu_);
    if (auto w = WriteAll(STDOUT_FILENO, reply); !w.ok()) {
      std::fprintf(stderr, "warmbox mcp: %s\n", w.error().ToString().c_str());
    }
  }

  std::string socket_;
  std::mutex mu_;
  std::condition_variable idle_;
  int in_flight_ = 0;
  std::mutex out_mu_;
};

}  // namespace

Action AddMcp(CLI::App& app) {
  auto socket = std::make_shared<std::string>();
  CLI::App* sub = app.add_subcommand(
      "mcp",
      "serve MCP (Model Context Protocol) on stdin/stdout for an agent, with the daemon's live "
      "sandboxes as tools (docs/mcp.md)");
  sub->add_option("--socket", *socket, "daemon socket");
  return [=](const GlobalOptions&) -> int { return Relay(SocketOrDefault(*socket)).Run(); };
}

}  // namespace wb::cli
