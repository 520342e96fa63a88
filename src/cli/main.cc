// warmbox: the command-line interface.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "base/log.h"
#include "cli/options.h"
#include "cli/verbs.h"

namespace {

// The first argument that is not a global option or its value: the verb.
std::string FirstPositional(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--") return "";
    if (a == "--state-dir" || a == "--userns-base" || a == "--uid-slots" || a == "--log-level" ||
        a == "--log-format") {
      ++i;
      continue;
    }
    if (!a.empty() && a[0] == '-') continue;
    return a;
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  using namespace wb::cli;
  CLI::App app{"warmbox: run untrusted code in isolated sandboxes, fast"};
  app.set_version_flag("--version", "warmbox 0.1.0");
  app.require_subcommand(1);
  GlobalOptions g;
  g.log_level = "";
  app.add_option("--state-dir", g.state_dir,
                 "state directory (default $WARMBOX_STATE_DIR or /var/lib/warmbox)");
  app.add_option("--userns-base", g.userns_base,
                 "first host uid/gid of the sandboxes' 65536-id range (default "
                 "$WARMBOX_USERNS_BASE or 1000000000)");
  app.add_option("--uid-slots", g.uid_slots_text,
                 "sandbox uid ranges: sandbox k of 1..N runs as the 65536 ids at userns-base + "
                 "k*65536 (default $WARMBOX_UID_SLOTS or 128; 0: all sandboxes share "
                 "userns-base's range)");
  app.add_option("--log-level", g.log_level, "trace|debug|info|warn|error")
      ->check(CLI::IsMember({"", "trace", "debug", "info", "warn", "error", "off"}));
  std::string log_format = "text";
  app.add_option("--log-format", log_format, "text (default) or json (one object per line)")
      ->check(CLI::IsMember({"text", "json"}));

  std::vector<std::pair<CLI::App*, Action>> verbs;
  auto add = [&](Action a) { verbs.emplace_back(app.get_subcommands({}).back(), std::move(a)); };
  add(AddRun(app));
  add(AddImage(app));
  add(AddTemplate(app));
  add(AddGc(app));
  add(AddPool(app));
  add(AddVm(app));
  add(AddExec(app));
  add(AddAttach(app));
  add(AddPs(app));
  add(AddSignal(app));
  add(AddCp(app));
  add(AddSandbox(app));
  add(AddLogs(app));
  add(AddMcp(app));
  add(AddRunCode(app));

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One line naming what was wrong, and the exit code of warmbox errors.
    std::string what = e.what();
    if (std::string verb = FirstPositional(argc, argv); !verb.empty()) {
      bool known = false;
      for (auto* sub : app.get_subcommands({})) known |= sub->get_name() == verb;
      if (!known) what = "unknown command '" + verb + "'";
    }
    std::fprintf(stderr, "warmbox: %s (see 'warmbox --help')\n", what.c_str());
    return kExitWarmboxError;
  }
  if (g.log_level.empty()) {
    // The daemon reports each run at info; one-shot commands stay quiet.
    auto* pool = app.get_subcommand("pool");
    bool daemon = pool->parsed() && pool->get_subcommand("start")->parsed();
    g.log_level = daemon ? "info" : "warn";
  }
  wb::InitLogging(g.log_level, log_format == "json" ? wb::LogFormat::kJson : wb::LogFormat::kText);
  // A reader that goes away (| head) must not kill us before cleanup.
  ::signal(SIGPIPE, SIG_IGN);
  if (auto r = Finish(g); !r.ok()) return ReportError(r.error());
  for (auto& [sub, action] : verbs) {
    if (sub->parsed()) return action(g);
  }
  return kExitWarmboxError;
}
