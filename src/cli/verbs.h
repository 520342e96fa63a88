// One file per verb. Each registers its subcommand and returns the function
// that runs it once parsing succeeded.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

#include "cli/options.h"

namespace wb::cli {

using Action = std::function<int(const GlobalOptions&)>;

Action AddRun(CLI::App& app);
Action AddImage(CLI::App& app);
Action AddTemplate(CLI::App& app);  // template build-debian NAME
Action AddGc(CLI::App& app);
Action AddPool(CLI::App& app);
Action AddVm(CLI::App& app);
// Live sandboxes' processes and files (exec.cc, ps.cc, cp.cc).
Action AddExec(CLI::App& app);
Action AddAttach(CLI::App& app);
Action AddPs(CLI::App& app);
Action AddSignal(CLI::App& app);
Action AddCp(CLI::App& app);
Action AddSandbox(
    CLI::App& app);  // sandbox create | ls | inspect | kill | set-timeout | pause | resume
Action AddLogs(CLI::App& app);     // logs [-f] [--tail N] ID
Action AddMcp(CLI::App& app);      // mcp [--socket PATH]: MCP over stdio (docs/mcp.md)
Action AddRunCode(CLI::App& app);  // run-code ID [--language L] [--context C] -- CODE

}  // namespace wb::cli
