// warmbox logs [-f] [--tail N] ID: a live sandbox's main-process log.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/verbs.h"
#include "daemon/client.h"
#include "daemon/live_proto.h"
#include "daemon/server.h"

namespace wb::cli {

Action AddLogs(CLI::App& app) {
  auto socket = std::make_shared<std::string>();
  auto id = std::make_shared<std::string>();
  auto follow = std::make_shared<bool>(false);
  auto tail = std::make_shared<size_t>(0);
  CLI::App* logs = app.add_subcommand(
      "logs", "a live sandbox's main-process log: \"<RFC 3339 time> <stream> <text>\" lines");
  logs->add_option("--socket", *socket, "daemon socket");
  logs->add_flag("-f,--follow", *follow, "keep printing lines as they come");
  logs->add_option("--tail", *tail, "only the last N lines (default: all that is kept)");
  logs->add_option("id", *id, "sandbox id")->required();
  return [=](const GlobalOptions&) -> int {
    daemon::LiveRequest r;
    r.op = daemon::LiveOp::kLogs;
    r.id = *id;
    r.tail = *tail;
    r.follow = *follow;
    daemon::PoolClient client(socket->empty() ? daemon::DefaultSocketPath() : *socket);
    std::optional<Error> failed;
    auto s = client.Stream(daemon::ToJson(r), [&](const std::string& body) {
      auto j = nlohmann::json::parse(body, nullptr, false);
      if (j.is_discarded() || !j.is_object()) {
        failed = Fail("logs", *id, "bad reply from the daemon: " + body);
        return false;
      }
      if (j.contains("ok") && !j.value("ok", false)) {
        failed = Fail("logs", *id, j.value("error", body));
        return false;
      }
      if (j.contains("lines")) {
        for (const auto& l : j["lines"]) std::printf("%s\n", l.get<std::string>().c_str());
      } else if (j.contains("line")) {
        std::printf("%s\n", j["line"].get<std::string>().c_str());
      } else if (j.value("end", false)) {
        return false;
      }
      std::fflush(stdout);
      return *follow;
    });
    if (failed) return ReportError(*failed);
    if (!s.ok()) return ReportError(s.error());
    return 0;
  };
}

}  // namespace wb::cli
