// warmbox gc: remove what crashed warmbox processes left behind.
#include <cstdio>

#include "cli/verbs.h"
#include "image/store.h"
#include "sandbox/cgroup.h"
#include "sandbox/sandbox_dir.h"

namespace wb::cli {

Action AddGc(CLI::App& app) {
  app.add_subcommand(
      "gc", "remove sandboxes (dirs, cgroups, processes) left by crashed warmbox processes");
  return [](const GlobalOptions& g) {
    GcReport rep = CollectGarbage(g.state_dir);
    size_t cgroups = 0;
    if (auto layout = HostCgroupLayout(); layout.ok())
      cgroups = SweepOrphanCgroups(*layout, g.cgroup_parent);
    std::printf("removed %d leftover sandbox(es) and %zu orphaned cgroup(s); %d in use\n",
                rep.removed, cgroups, rep.kept);
    // Removed image dirs that only those sandboxes still mounted.
    ImageStore store(g.state_dir, g.uid_base);
    if (auto trash = store.EmptyTrash(); !trash.ok()) {
      rep.errors.push_back(trash.error().ToString());
    } else if (*trash) {
      std::printf("kept %zu removed image dir(s) that running sandboxes mount\n", *trash);
    }
    for (const auto& e : rep.errors) std::fprintf(stderr, "warmbox: gc: %s\n", e.c_str());
    return rep.errors.empty() ? 0 : kExitWarmboxError;
  };
}

}  // namespace wb::cli
