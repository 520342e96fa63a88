// warmbox sandbox create | ls | inspect | kill | set-timeout | pause | resume:
// the live sandboxes of a running daemon (docs/live-sandboxes.md), over its socket.
#include <time.h>

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/strings.h"
#include "cli/verbs.h"
#include "daemon/client.h"
#include "daemon/live_proto.h"
#include "daemon/server.h"

namespace wb::cli {
namespace {

using nlohmann::json;

struct CreateOpts {
  std::string image, driver, timeout, memory, cpus, pids, user, workdir, on_timeout = "kill";
  std::vector<std::string> env, metadata, main, main_rest;
  bool no_main = false, json = false;
  NetworkChoice network;
};

Result<std::map<std::string, std::string>> ParsePairs(const std::vector<std::string>& kvs,
                                                      const char* what) {
  std::map<std::string, std::string> out;
  for (const auto& kv : kvs) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0)
      return Fail(ErrorCode::kInvalidArgument, what, kv, "expected KEY=VALUE");
    out[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return out;
}

std::string SocketOf(const std::string& s) { return s.empty() ? daemon::DefaultSocketPath() : s; }

// One request; the reply's JSON when "ok", else its error (exit 125).
Result<json> Call(const std::string& socket, const daemon::LiveRequest& req) {
  daemon::PoolClient client(SocketOf(socket));
  std::string body = WB_TRY(client.RoundTrip(daemon::ToJson(req)));
  auto j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return Fail("sandbox", "", "bad reply from the daemon: " + body);
  if (!j.value("ok", false)) {
    std::string err = j.contains("error") && j["error"].is_string()
                          ? j["error"].get<std::string>()
                          : "the daemon refused (is it older than this client?): " + body;
    return Fail("sandbox", "", err);
  }
  return j;
}

std::string Time(int64_t ms) {
  time_t s = static_cast<time_t>(ms / 1000);
  tm t{};
  ::localtime_r(&s, &t);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &t);
  return buf;
}

Result<int> DoCreate(const std::string& socket, const CreateOpts& o, bool main_given) {
  daemon::LiveRequest r;
  r.op = daemon::LiveOp::kCreate;
  auto& c = r.create;
  if (!o.image.empty()) c.image = o.image;
  if (!o.driver.empty()) {
    WB_RETURN_IF_ERROR(ValidateDriver(o.driver));
    c.driver = o.driver;
  }
  if (!o.timeout.empty()) {
    double s = WB_TRY(ParseSeconds(o.timeout, "--timeout"));
    c.timeout_s = static_cast<uint64_t>(std::ceil(s));
    if (*c.timeout_s == 0) return Fail("--timeout", o.timeout, "must be at least 1 second");
  }
  for (const auto& kv : o.env) {
    if (kv.empty() || kv.front() == '=') return Fail("-e", kv, "expected KEY=VALUE");
    if (kv.find('=') == std::string::npos) {
      if (const char* v = std::getenv(kv.c_str())) c.env.push_back(kv + "=" + v);
      continue;
    }
    c.env.push_back(kv);
  }
  c.metadata = WB_TRY(ParsePairs(o.metadata, "--metadata"));
  if (!o.memory.empty()) c.memory_bytes = WB_TRY(ParseSize(o.memory, "--memory"));
  if (!o.pids.empty()) c.pids = WB_TRY(ParseUint(o.pids, "--pids"));
  if (!o.cpus.empty()) c.cpus = WB_TRY(ParseCpus(o.cpus, "--cpus"));
  c.user = o.user;
  c.cwd = o.workdir;
  c.network = WB_TRY(ParseNetworkChoice(o.network));
  if (o.no_main && main_given) return Fail("--no-main", "", "given with --main");
  if (o.no_main) c.main = std::vector<std::string>();
  if (main_given) {
    std::vector<std::string> m = o.main;
    m.insert(m.end(), o.main_rest.begin(), o.main_rest.end());
    if (m.empty()) return Fail("--main", "", "missing command: --main CMD [ARG...]");
    c.main = m;
  } else if (!o.main_rest.empty()) {
    return Fail("sandbox create", o.main_rest[0],
                "unexpected argument (the main goes after --main)");
  }
  c.on_timeout = o.on_timeout;
  json reply = WB_TRY(Call(socket, r));
  if (o.json) {
    std::printf("%s\n", reply["sandbox"].dump(2).c_str());
  } else {
    std::printf("%s\n", reply["sandbox"].value("id", "").c_str());
  }
  return 0;
}

Result<int> DoList(const std::string& socket, const std::vector<std::string>& metadata,
                   bool as_json) {
  daemon::LiveRequest r;
  r.op = daemon::LiveOp::kList;
  r.metadata = WB_TRY(ParsePairs(metadata, "--metadata"));
  json reply = WB_TRY(Call(socket, r));
  const json& list = reply["sandboxes"];
  if (as_json) {
    std::printf("%s\n", list.dump(2).c_str());
    return 0;
  }
  std::printf("%-32s  %-16s %-6s %-8s %-19s  %-19s  %s\n", "ID", "IMAGE", "DRIVER", "STATE",
              "CREATED", "EXPIRES", "METADATA");
  for (const auto& s : list) {
    std::string meta;
    for (const auto& [k, v] : s["metadata"].items())
      meta += (meta.empty() ? "" : ",") + k + "=" + v.get<std::string>();
    std::printf("%-32s  %-16s %-6s %-8s %-19s  %-19s  %s\n", s.value("id", "").c_str(),
                s.value("image", "").c_str(), s.value("driver", "").c_str(),
                s.value("state", "").c_str(), Time(s.value("created_ms", int64_t{0})).c_str(),
                Time(s.value("expires_ms", int64_t{0})).c_str(), meta.c_str());
  }
  return 0;
}

Result<int> DoInspect(const std::string& socket, const std::string& id, bool as_json) {
  daemon::LiveRequest r;
  r.op = daemon::LiveOp::kInspect;
  r.id = id;
  json reply = WB_TRY(Call(socket, r));
  const json& s = reply["sandbox"];
  if (as_json) {
    std::printf("%s\n", s.dump(2).c_str());
    return 0;
  }
  for (const auto& [k, v] : s.items()) {
    std::string text = v.is_string() ? v.get<std::string>() : v.dump();
    if (k == "created_ms" || k == "expires_ms") text += " (" + Time(v.get<int64_t>()) + ")";
    std::printf("%-15s %s\n", (k + ":").c_str(), text.c_str());
  }
  return 0;
}

Result<int> DoSimple(const std::string& socket, daemon::LiveOp op, const std::string& id,
                     uint64_t timeout_s = 0) {
  daemon::LiveRequest r;
  r.op = op;
  r.id = id;
  r.timeout_s = timeout_s;
  WB_TRY(Call(socket, r));
  return 0;
}

}  // namespace

Action AddSandbox(CLI::App& app) {
  auto socket = std::make_shared<std::string>();
  auto co = std::make_shared<CreateOpts>();
  auto id = std::make_shared<std::string>();
  auto as_json = std::make_shared<bool>(false);
  auto metadata = std::make_shared<std::vector<std::string>>();
  auto seconds = std::make_shared<std::string>();
  CLI::App* sb = app.add_subcommand("sandbox", "live sandboxes of the pool daemon");
  sb->require_subcommand(1);

  CLI::App* create = sb->add_subcommand("create", "claim a live sandbox; prints its id");
  create->add_option("--socket", *socket, "daemon socket");
  create->add_option("--image", co->image, "image (default: the daemon's)");
  create->add_option("--driver", co->driver, "ns or vm (default: the daemon's --driver)");
  create->add_option("--timeout", co->timeout, "seconds it lives (default 300)");
  create->add_option("-e,--env", co->env, "KEY=VALUE: default env of its processes (repeatable)")
      ->allow_extra_args(false);
  create->add_option("--metadata", co->metadata, "KEY=VALUE (repeatable)")->allow_extra_args(false);
  create->add_option("--memory", co->memory, "memory limit (default: the daemon's)");
  create->add_option("--cpus", co->cpus, "CPU quota in cores");
  create->add_option("--pids", co->pids, "process limit");
  create->add_option("-u,--user", co->user, "default user[:group] of its processes");
  create->add_option("-w,--workdir", co->workdir, "default working directory");
  CLI::Option* main_opt = create
                              ->add_option("--main", co->main,
                                           "CMD [ARG...]: its main process (default: the "
                                           "image's Entrypoint/Cmd); or --main -- CMD ARG...")
                              ->expected(0, -1);
  create->add_flag("--no-main", co->no_main, "no main process, even if the image has one");
  AddNetworkOptions(create, co->network);
  create->add_option("--on-timeout", co->on_timeout, "kill (default) or pause")
      ->check(CLI::IsMember({"kill", "pause"}));
  create->add_flag("--json", co->json, "print the sandbox as JSON");
  create->add_option("main_args", co->main_rest, "the main's command (after --main --)");

  CLI::App* ls = sb->add_subcommand("ls", "list the live sandboxes");
  ls->add_option("--socket", *socket, "daemon socket");
  ls->add_flag("--json", *as_json, "print JSON");
  ls->add_option("--metadata", *metadata, "KEY=VALUE: only those with it (repeatable)")
      ->allow_extra_args(false);

  CLI::App* inspect = sb->add_subcommand("inspect", "show a live sandbox");
  inspect->add_option("--socket", *socket, "daemon socket");
  inspect->add_option("id", *id, "sandbox id")->required();
  inspect->add_flag("--json", *as_json, "print JSON");

  CLI::App* kill = sb->add_subcommand("kill", "destroy a live sandbox");
  kill->add_option("--socket", *socket, "daemon socket");
  kill->add_option("id", *id, "sandbox id")->required();

  CLI::App* set_timeout =
      sb->add_subcommand("set-timeout", "it expires S seconds from now (capped by the daemon)");
  set_timeout->add_option("--socket", *socket, "daemon socket");
  set_timeout->add_option("id", *id, "sandbox id")->required();
  set_timeout->add_option("seconds", *seconds, "seconds")->required();

  CLI::App* pause = sb->add_subcommand("pause", "freeze every process of a live sandbox");
  pause->add_option("--socket", *socket, "daemon socket");
  pause->add_option("id", *id, "sandbox id")->required();
  CLI::App* resume = sb->add_subcommand("resume", "resume a paused live sandbox");
  resume->add_option("--socket", *socket, "daemon socket");
  resume->add_option("id", *id, "sandbox id")->required();

  return [=](const GlobalOptions&) -> int {
    Result<int> r = 0;
    if (create->parsed()) {
      r = DoCreate(*socket, *co, main_opt->count() > 0);
    } else if (ls->parsed()) {
      r = DoList(*socket, *metadata, *as_json);
    } else if (inspect->parsed()) {
      r = DoInspect(*socket, *id, *as_json);
    } else if (kill->parsed()) {
      r = DoSimple(*socket, daemon::LiveOp::kKill, *id);
    } else if (set_timeout->parsed()) {
      auto s = ParseSeconds(*seconds, "seconds");
      r = s.ok() ? DoSimple(*socket, daemon::LiveOp::kSetTimeout, *id,
                            static_cast<uint64_t>(std::max(1.0, std::ceil(*s))))
                 : Result<int>(s.error());
    } else if (pause->parsed()) {
      r = DoSimple(*socket, daemon::LiveOp::kPause, *id);
    } else if (resume->parsed()) {
      r = DoSimple(*socket, daemon::LiveOp::kResume, *id);
    }
    if (!r.ok()) return ReportError(r.error());
    return *r;
  };
}

}  // namespace wb::cli
