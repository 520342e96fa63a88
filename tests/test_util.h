// Helpers shared by the tests that run warmbox for real.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace wb::testing {

struct ProcResult {
  int code = -1;  // exit code or 128+signal
  std::string out, err;
};

// Runs argv (argv[0] an absolute path) with extra env "K=V", feeding stdin_data
// (or /dev/null), draining stdout and stderr concurrently.
ProcResult RunProcess(const std::vector<std::string>& argv,
                      const std::vector<std::string>& env = {},
                      const std::string* stdin_data = nullptr);

std::string BuildDir();
// A fresh state dir under /tmp, removed by the caller.
std::string MakeTempDir(const std::string& prefix);

// Host pids whose real uid is in [lo, hi).
std::set<pid_t> PidsWithUidIn(uint32_t lo, uint32_t hi);
// Host pids of root inside any sandbox of a daemon at base: uid base +
// k*65536 for k in 0..slots (sandbox/ns/uid_slots.h; default: 128).
std::set<pid_t> SandboxRootPids(uint32_t base, uint32_t slots = 128);
// Number of open fds of this process.
int CountOpenFds();
// Mount points in /proc/self/mountinfo.
std::multiset<std::string> MountPoints();
// Every directory below root (recursive, root excluded); empty if absent.
std::set<std::string> DirsBelow(const std::string& root);

// The names in dir ("." and ".." excluded); empty if absent.
std::vector<std::string> Entries(const std::string& dir);
// Processes whose command line mentions text (e.g. a test's own state dir).
std::vector<pid_t> ProcessesMentioning(const std::string& text);
// The parent of pid (/proc/<pid>/status), 0 if it is gone.
pid_t ParentOf(pid_t pid);
// Those of them whose parent is parent (dnsmasq serves each TCP connection in
// a short-lived child of its own, which mentions the same).
std::vector<pid_t> ChildrenMentioning(pid_t parent, const std::string& text);
// What every driver and path (warmbox run, pool run) prints on stderr for a
// program that does not exist (exit 127), and the refusal of a run with no
// command at all in the default image (no Cmd or Entrypoint).
inline constexpr const char* kMissingProgramStderr =
    "warmbox: exec(no-such-program): executable file not found in $PATH\n";
inline constexpr const char* kMissingCommandError =
    "run(busybox): missing command (the image has no Cmd or Entrypoint): give CMD [ARG...] after "
    "--";

// Probes: an empty string when usable, else the reason to skip.
std::string SandboxProbe();

template <typename Pred>
bool Eventually(Pred pred, int ms = 5000) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return pred();
}

}  // namespace wb::testing
