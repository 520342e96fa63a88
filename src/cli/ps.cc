// warmbox ps and warmbox signal: the processes started through warmbox in a
// live sandbox, and signals to them.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>

#include "base/strings.h"
#include "cli/live_client.h"
#include "cli/verbs.h"

namespace wb::cli {
namespace {

using proto::FrameType;

std::string Status(const nlohmann::json& p) {
  if (p.value("running", false)) return "running";
  auto e = p.find("exit");
  if (e == p.end() || !e->is_object()) return "exited";
  if (e->value("signal", 0) != 0)
    return "killed (signal " + std::to_string(e->value("signal", 0)) + ")";
  return "exited " + std::to_string(e->value("exit_code", 0));
}

Result<int> DoPs(const std::string& socket, const std::string& id, bool json) {
  LiveConn c = WB_TRY(LiveConn::Open(SocketOrDefault(socket), {{"op", "ps"}, {"id", id}}));
  std::string body = WB_TRY(Expect(c, FrameType::kListReply));
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_object() || !j["processes"].is_array()) {
    return Fail("ps", id, "the agent's process list is not {\"processes\":[...]}");
  }
  if (json) {
    std::printf("%s\n", j["processes"].dump().c_str());
    return 0;
  }
  std::printf("%-8s %-18s %-10s %-6s %s\n", "PID", "STATUS", "USER", "TAG", "COMMAND");
  for (const auto& p : j["processes"]) {
    std::string argv;
    for (const auto& a : p.value("argv", nlohmann::json::array())) {
      argv += (argv.empty() ? "" : " ") + a.get<std::string>();
    }
    std::string user = p.value("user", "");
    std::printf("%-8lld %-18s %-10s %-6s %s\n", p.value("pid", 0LL), Status(p).c_str(),
                user.empty() ? "root" : user.c_str(), p.value("tag", "").c_str(), argv.c_str());
  }
  return 0;
}

Result<int> DoSignal(const std::string& socket, const std::string& id, const std::string& pid,
                     const std::string& sig) {
  const uint64_t n = WB_TRY(ParseUint(pid, "PID"));  // not inside the braces: see live_ops.cc
  nlohmann::json req{{"op", "signal"}, {"id", id}, {"pid", n}};
  if (!sig.empty()) req["signal"] = sig;
  LiveConn c = WB_TRY(LiveConn::Open(SocketOrDefault(socket), req));
  if (auto b = Expect(c, FrameType::kSignalReply); !b.ok()) return b.error();
  return 0;
}

}  // namespace

Action AddPs(CLI::App& app) {
  auto socket = std::make_shared<std::string>();
  auto id = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  CLI::App* ps = app.add_subcommand("ps", "list the processes started in a live sandbox");
  ps->add_option("--socket", *socket, "daemon socket");
  ps->add_flag("--json", *json, "print the processes as JSON");
  ps->add_option("id", *id, "sandbox id")->required();
  return [=](const GlobalOptions&) -> int {
    auto r = DoPs(*socket, *id, *json);
    if (!r.ok()) return ReportError(r.error());
    return *r;
  };
}

Action AddSignal(CLI::App& app) {
  auto socket = std::make_shared<std::string>();
  auto args = std::make_shared<std::vector<std::string>>();
  CLI::App* sig = app.add_subcommand("signal", "send a signal (default TERM) to a process");
  sig->add_option("--socket", *socket, "daemon socket");
  sig->add_option("args", *args, "ID PID [SIGNAL]")->required()->expected(2, 3);
  return [=](const GlobalOptions&) -> int {
    auto r = DoSignal(*socket, (*args)[0], (*args)[1], args->size() > 2 ? (*args)[2] : "");
    if (!r.ok()) return ReportError(r.error());
    return *r;
  };
}

}  // namespace wb::cli
