#include "base/child.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/fd.h"
#include "base/fs.h"
#include "base/strings.h"
#include "tests/assert_ok.h"
#include "tests/test_util.h"
#include "tests/uid_ranges.h"

namespace wb {
namespace {

SpawnOptions Shell(const std::string& script) {
  SpawnOptions o;
  o.path = "/bin/sh";
  o.argv = {"sh", "-c", script};
  return o;
}

SpawnOptions Sleeper() {
  SpawnOptions o;
  o.path = "/bin/sleep";
  o.argv = {"sleep", "1000"};
  return o;
}

std::string ReadLink(const std::string& path) {
  char buf[4096];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
  if (n < 0) return "<readlink " + path + " failed: errno " + std::to_string(errno) + ">";
  return std::string(buf, static_cast<size_t>(n));
}

// Spawns opts with the child's stdout on a pipe, reads it to EOF and waits.
struct Captured {
  std::string out;
  ExitStatus status;
};
// before_wait (if set) sees the child once its output has ended.
Captured SpawnAndCapture(SpawnOptions opts,
                         const std::function<void(ChildProcess&)>& before_wait = {}) {
  Captured run;
  auto pipe = MakePipe();
  EXPECT_OK(pipe);
  if (!pipe.ok()) return run;
  opts.fds.push_back({pipe->write.get(), 1});
  auto child = ChildProcess::Spawn(opts);
  EXPECT_OK(child);
  if (!child.ok()) return run;
  pipe->write.reset();  // the child holds the only write end now
  auto out = ReadAll(pipe->read.get());
  EXPECT_OK(out);
  if (out.ok()) run.out = *out;
  if (before_wait) before_wait(*child);
  auto st = child->Wait();
  EXPECT_OK(st);
  if (st.ok()) run.status = *st;
  return run;
}

// --- exit status ---------------------------------------------------------------

TEST(ChildProcessTest, WaitReportsExitCode) {
  auto child = ChildProcess::Spawn(Shell("exit 7"));
  ASSERT_OK(child);
  EXPECT_GT(child->pid(), 0);
  EXPECT_GE(child->pidfd(), 0);
  auto st = child->Wait();
  ASSERT_OK(st);
  EXPECT_EQ(st->code, 7);
  EXPECT_EQ(st->signal, 0);
  EXPECT_EQ(st->ShellCode(), 7);
  EXPECT_EQ(st->Describe(), "exited with code 7");
  EXPECT_FALSE(child->running());
}

TEST(ChildProcessTest, KilledChildReportsSignal) {
  auto child = ChildProcess::Spawn(Sleeper());
  ASSERT_OK(child);
  ASSERT_TRUE(child->Signal(SIGKILL).ok());
  auto st = child->Wait();
  ASSERT_OK(st);
  EXPECT_EQ(st->signal, SIGKILL);
  EXPECT_EQ(st->ShellCode(), 137);
  EXPECT_NE(st->Describe().find("signal 9"), std::string::npos) << st->Describe();
}

TEST(ChildProcessTest, SelfKilledShellReportsSignal) {
  auto child = ChildProcess::Spawn(Shell("kill -TERM $$"));
  ASSERT_OK(child);
  auto st = child->Wait();
  ASSERT_OK(st);
  EXPECT_EQ(st->signal, SIGTERM);
  EXPECT_EQ(st->ShellCode(), 128 + SIGTERM);
}

TEST(ChildProcessTest, WaitTwiceFails) {
  auto child = ChildProcess::Spawn(Shell("exit 0"));
  ASSERT_OK(child);
  ASSERT_TRUE(child->Wait().ok());
  EXPECT_FALSE(child->Wait().ok());
  EXPECT_FALSE(child->TryWait().ok());
  EXPECT_FALSE(child->Signal(SIGTERM).ok());
}

TEST(ChildProcessTest, KillAndReapReapsThroughANonBlockingPidfd) {
  // A watcher's event loop may make the pidfd's file description
  // non-blocking; waitid then answers EAGAIN while the child dies. The kill
  // must still reap it: no zombie left.
  auto child = ChildProcess::Spawn(Sleeper());
  ASSERT_OK(child);
  pid_t pid = child->pid();
  ASSERT_EQ(::fcntl(child->pidfd(), F_SETFL, O_NONBLOCK), 0);
  child->KillAndReap();
  EXPECT_FALSE(child->running());
  EXPECT_NE(::access(("/proc/" + std::to_string(pid)).c_str(), F_OK), 0) << "left a zombie";
}

TEST(ChildProcessTest, TryWaitIsEmptyWhileRunning) {
  auto child = ChildProcess::Spawn(Sleeper());
  ASSERT_OK(child);
  auto r = child->TryWait();
  ASSERT_OK(r);
  EXPECT_FALSE(r->has_value());
  EXPECT_TRUE(child->running());
  EXPECT_EQ(::kill(child->pid(), 0), 0);
}

TEST(ChildProcessTest, TryWaitReapsExitedChild) {
  auto child = ChildProcess::Spawn(Sleeper());
  ASSERT_OK(child);
  ASSERT_TRUE(child->Signal(SIGTERM).ok());
  // A pidfd becomes readable once the process has exited.
  pollfd pfd{child->pidfd(), POLLIN, 0};
  ASSERT_EQ(::poll(&pfd, 1, 10000), 1);
  auto r = child->TryWait();
  ASSERT_OK(r);
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->signal, SIGTERM);
  EXPECT_FALSE(child->running());
}

// --- fds -----------------------------------------------------------------------

TEST(ChildProcessTest, MappedPipeBecomesStdout) {
  SpawnOptions o;
  o.path = "/bin/echo";
  o.argv = {"echo", "hello"};
  Captured run = SpawnAndCapture(o);
  EXPECT_EQ(run.out, "hello\n");
  EXPECT_EQ(run.status.code, 0);
}

TEST(ChildProcessTest, OnePipeCanBeMappedToStdoutAndStderr) {
  auto pipe = MakePipe();
  ASSERT_OK(pipe);
  SpawnOptions o = Shell("echo out; echo err >&2");
  o.fds = {{pipe->write.get(), 1}, {pipe->write.get(), 2}};
  auto child = ChildProcess::Spawn(o);
  ASSERT_OK(child);
  pipe->write.reset();
  auto out = ReadAll(pipe->read.get());
  ASSERT_OK(out);
  EXPECT_EQ(*out, "out\nerr\n");
  ASSERT_TRUE(child->Wait().ok());
}

TEST(ChildProcessTest, UnmappedStdioIsDevNull) {
  Captured run = SpawnAndCapture(Shell("readlink /proc/self/fd/0; readlink /proc/self/fd/2"));
  EXPECT_EQ(run.out, "/dev/null\n/dev/null\n");
  EXPECT_EQ(run.status.code, 0);
}

TEST(ChildProcessTest, SwappedFdMappingsDoNotClobberEachOther) {
  // Parent fds 8 and 9 are mapped crosswise to child fds 9 and 8: a naive
  // dup2 loop would overwrite one source before copying it.
  auto a = MakePipe();
  auto b = MakePipe();
  ASSERT_TRUE(a.ok() && b.ok());
  UniqueFd a8(::fcntl(a->write.get(), F_DUPFD_CLOEXEC, 8));
  UniqueFd b9(::fcntl(b->write.get(), F_DUPFD_CLOEXEC, 9));
  if (a8.get() != 8 || b9.get() != 9) GTEST_SKIP() << "fds 8 and 9 are not free in this process";
  a->write.reset();
  b->write.reset();
  SpawnOptions o = Shell("echo to8 >&8; echo to9 >&9");
  o.fds = {{8, 9}, {9, 8}};
  auto child = ChildProcess::Spawn(o);
  ASSERT_OK(child);
  a8.reset();
  b9.reset();
  auto from_a = ReadAll(a->read.get());
  auto from_b = ReadAll(b->read.get());
  ASSERT_TRUE(from_a.ok() && from_b.ok());
  EXPECT_EQ(*from_a, "to9\n");  // parent 8 is child 9
  EXPECT_EQ(*from_b, "to8\n");  // parent 9 is child 8
  auto st = child->Wait();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->code, 0);
}

// ls itself, not through a shell: a shell may hold fds of its own.
SpawnOptions ListOwnFds() {
  SpawnOptions o;
  o.path = "/bin/ls";
  o.argv = {"ls", "/proc/self/fd"};
  return o;
}

std::set<int> FdsOf(const std::string& ls_output) {
  std::set<int> fds;
  for (const auto& line : Split(ls_output, '\n')) {
    if (Trim(line).empty()) continue;
    auto n = ParseUint(line, "fd");
    EXPECT_TRUE(n.ok()) << "unexpected ls line: " << line;
    if (n.ok()) fds.insert(static_cast<int>(*n));
  }
  return fds;
}

TEST(ChildProcessTest, UnlistedFdsAreNotInherited) {
  // An fd deliberately left without FD_CLOEXEC: exec alone would pass it on.
  UniqueFd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(devnull.valid());
  UniqueFd leaked(::fcntl(devnull.get(), F_DUPFD, 40));
  ASSERT_TRUE(leaked.valid());
  ASSERT_EQ(::fcntl(leaked.get(), F_GETFD), 0) << "test fd must be inheritable";

  Captured run = SpawnAndCapture(ListOwnFds());
  ASSERT_EQ(run.status.code, 0);
  std::set<int> fds = FdsOf(run.out);
  EXPECT_EQ(fds.count(0), 1u);
  EXPECT_EQ(fds.count(1), 1u);
  EXPECT_EQ(fds.count(2), 1u);
  EXPECT_EQ(fds.count(leaked.get()), 0u) << "fd " << leaked.get() << " leaked into the child:\n"
                                         << run.out;
  // 0, 1, 2 and the directory ls itself has open on /proc/self/fd.
  EXPECT_LE(fds.size(), 4u) << run.out;
}

// Disabled: documents a bug in child.cc. ChildMain closes inherited fds only
// from max(target)+1 upwards (close_range(max_dst + 1, ...)), so an inheritable
// fd whose number lies between 3 and the highest mapped target, and that is
// not itself a target, survives execve, contrary to "every other fd is closed
// at exec" in child.h.
TEST(ChildProcessTest, UnlistedFdsBelowHighestTargetAreNotInherited) {
  UniqueFd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(devnull.valid());
  UniqueFd leaked(::fcntl(devnull.get(), F_DUPFD, 3));
  ASSERT_TRUE(leaked.valid());
  ASSERT_LT(leaked.get(), 63);
  ASSERT_EQ(::fcntl(leaked.get(), F_GETFD), 0);

  SpawnOptions o = ListOwnFds();
  o.fds.push_back({devnull.get(), 63});  // highest allowed target
  Captured run = SpawnAndCapture(o);
  ASSERT_EQ(run.status.code, 0);
  std::set<int> fds = FdsOf(run.out);
  EXPECT_EQ(fds.count(63), 1u) << run.out;
  EXPECT_EQ(fds.count(leaked.get()), 0u) << "fd " << leaked.get() << " leaked into the child:\n"
                                         << run.out;
}

TEST(ChildProcessTest, FdTargetOutOfRangeIsRejected) {
  SpawnOptions o = Shell("exit 0");
  o.fds = {{0, 64}};
  auto child = ChildProcess::Spawn(o);
  ASSERT_FALSE(child.ok());
  EXPECT_EQ(child.error().call, "spawn");
}

TEST(ChildProcessTest, EmptyArgvIsRejected) {
  SpawnOptions o;
  o.path = "/bin/true";
  auto child = ChildProcess::Spawn(o);
  ASSERT_FALSE(child.ok());
  EXPECT_EQ(child.error().call, "spawn");
}

// --- exec failures -------------------------------------------------------------

TEST(ChildProcessTest, ExecOfMissingProgramFailsInSpawn) {
  SpawnOptions o;
  o.path = "/nonexistent/warmbox-test-program";
  o.argv = {"prog"};
  auto child = ChildProcess::Spawn(o);
  ASSERT_FALSE(child.ok());
  EXPECT_EQ(child.error().call, "execve");
  EXPECT_EQ(child.error().err, ENOENT);
  EXPECT_EQ(child.error().arg, "/nonexistent/warmbox-test-program");
}

TEST(ChildProcessTest, ExecOfNonExecutableFailsWithEacces) {
  SpawnOptions o;
  o.path = "/proc/self/status";  // exists, not executable
  o.argv = {"status"};
  auto child = ChildProcess::Spawn(o);
  ASSERT_FALSE(child.ok());
  EXPECT_EQ(child.error().call, "execve");
  EXPECT_EQ(child.error().err, EACCES);
}

// --- await_exec = false --------------------------------------------------------

TEST(ChildProcessTest, UnconfirmedSpawnReportsAMissingProgramAtConfirmExec) {
  SpawnOptions o;
  o.path = "/nonexistent/warmbox-test-program";
  o.argv = {"prog"};
  o.await_exec = false;
  auto child = ChildProcess::Spawn(o);
  ASSERT_OK(child) << "the exec is not waited for";
  EXPECT_FALSE(child->Release().ok()) << "not held";
  auto confirmed = child->ConfirmExec();
  ASSERT_FALSE(confirmed.ok());
  EXPECT_EQ(confirmed.error().call, "execve");
  EXPECT_EQ(confirmed.error().err, ENOENT);
  EXPECT_FALSE(child->running()) << "killed and reaped";
}

TEST(ChildProcessTest, UnconfirmedSpawnRunsAndConfirmsOnce) {
  SpawnOptions o;
  o.path = "/bin/echo";
  o.argv = {"echo", "go"};
  o.await_exec = false;
  auto run = SpawnAndCapture(o, [](ChildProcess& child) {
    ASSERT_OK(child.ConfirmExec());
    ASSERT_OK(child.ConfirmExec()) << "a second confirmation is a no-op";
  });
  EXPECT_EQ(run.out, "go\n");
  EXPECT_EQ(run.status.code, 0);
}

// A cgroup that cannot be entered (here an fd not open for writing) fails the
// spawn before any clone, naming the step, and the thread's way back is taken.
TEST(ChildProcessTest, ACgroupThatCannotBeEnteredFailsTheSpawn) {
  UniqueFd in(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  UniqueFd out(::open("/dev/null", O_WRONLY | O_CLOEXEC));
  ASSERT_TRUE(in && out);
  SpawnOptions o = Shell("exit 0");
  o.clone_in_tasks_fds = {in.get()};
  o.clone_out_tasks_fds = {out.get()};
  auto child = ChildProcess::Spawn(o);
  ASSERT_FALSE(child.ok());
  EXPECT_NE(child.error().call.find("enter the child's cgroups"), std::string::npos)
      << child.error().ToString();
  EXPECT_EQ(child.error().err, EBADF);
}

TEST(ChildProcessTest, ConfirmExecOfAHeldChildFails) {
  SpawnOptions o = Shell("exit 0");
  o.hold_until_released = true;
  auto child = ChildProcess::Spawn(o);
  ASSERT_OK(child);
  EXPECT_FALSE(child->ConfirmExec().ok());
  ASSERT_OK(child->Release());
  ASSERT_OK(child->ConfirmExec());
  ASSERT_TRUE(child->Wait().ok());
}

// --- hold_until_released -------------------------------------------------------

TEST(ChildProcessTest, HeldChildDoesNotRunUntilReleased) {
  auto pipe = MakePipe();
  ASSERT_OK(pipe);
  SpawnOptions o;
  o.path = "/bin/echo";
  o.argv = {"echo", "go"};
  o.fds = {{pipe->write.get(), 1}};
  o.hold_until_released = true;
  auto child = ChildProcess::Spawn(o);
  ASSERT_OK(child);
  pipe->write.reset();

  pollfd pfd{pipe->read.get(), POLLIN, 0};
  EXPECT_EQ(::poll(&pfd, 1, 0), 0) << "held child produced output";
  // Not exec'd yet: the child is still a copy of this test binary.
  EXPECT_EQ(ReadLink("/proc/" + std::to_string(child->pid()) + "/exe"), ReadLink("/proc/self/exe"));
  EXPECT_TRUE(child->running());

  auto released = child->Release();
  ASSERT_OK(released);
  auto out = ReadAll(pipe->read.get());
  ASSERT_OK(out);
  EXPECT_EQ(*out, "go\n");
  auto st = child->Wait();
  ASSERT_OK(st);
  EXPECT_EQ(st->code, 0);
}

TEST(ChildProcessTest, ReleaseReportsExecFailureOfHeldChild) {
  SpawnOptions o;
  o.path = "/nonexistent/warmbox-test-program";
  o.argv = {"prog"};
  o.hold_until_released = true;
  auto child = ChildProcess::Spawn(o);
  ASSERT_OK(child) << "a held child has not tried execve yet";
  auto released = child->Release();
  ASSERT_FALSE(released.ok());
  EXPECT_EQ(released.error().call, "execve");
  EXPECT_EQ(released.error().err, ENOENT);
  EXPECT_FALSE(child->running());
}

TEST(ChildProcessTest, ReleaseOfChildNotHeldFails) {
  auto child = ChildProcess::Spawn(Sleeper());
  ASSERT_OK(child);
  EXPECT_FALSE(child->Release().ok());
}

TEST(ChildProcessTest, ReleaseTwiceFails) {
  SpawnOptions o = Shell("exit 0");
  o.hold_until_released = true;
  auto child = ChildProcess::Spawn(o);
  ASSERT_OK(child);
  ASSERT_TRUE(child->Release().ok());
  EXPECT_FALSE(child->Release().ok());
  ASSERT_TRUE(child->Wait().ok());
}

// --- lifetime ------------------------------------------------------------------

TEST(ChildProcessTest, DestructorKillsAndReaps) {
  pid_t pid;
  {
    auto child = ChildProcess::Spawn(Sleeper());
    ASSERT_OK(child);
    pid = child->pid();
    ASSERT_EQ(::kill(pid, 0), 0);
  }
  // Killed and reaped: not even a zombie is left under that pid.
  errno = 0;
  EXPECT_EQ(::kill(pid, 0), -1);
  EXPECT_EQ(errno, ESRCH);
}

TEST(ChildProcessTest, DestructorOfHeldChildKillsAndReaps) {
  pid_t pid;
  {
    SpawnOptions o = Sleeper();
    o.hold_until_released = true;
    auto child = ChildProcess::Spawn(o);
    ASSERT_OK(child);
    pid = child->pid();
  }
  errno = 0;
  EXPECT_EQ(::kill(pid, 0), -1);
  EXPECT_EQ(errno, ESRCH);
}

TEST(ChildProcessTest, KillAndReapIsIdempotent) {
  auto child = ChildProcess::Spawn(Sleeper());
  ASSERT_OK(child);
  pid_t pid = child->pid();
  child->KillAndReap();
  EXPECT_FALSE(child->running());
  child->KillAndReap();
  EXPECT_FALSE(child->running());
  errno = 0;
  EXPECT_EQ(::kill(pid, 0), -1);
  EXPECT_EQ(errno, ESRCH);
}

TEST(ChildProcessTest, MoveTransfersOwnership) {
  auto spawned = ChildProcess::Spawn(Sleeper());
  ASSERT_OK(spawned);
  pid_t pid = spawned->pid();
  ChildProcess moved = std::move(spawned).value();
  {
    ChildProcess owner = std::move(moved);
    EXPECT_FALSE(moved.running());  // NOLINT(bugprone-use-after-move): checking moved-from state
    EXPECT_TRUE(owner.running());
    EXPECT_EQ(owner.pid(), pid);
    EXPECT_EQ(::kill(pid, 0), 0) << "moving must not kill the child";
  }
  errno = 0;
  EXPECT_EQ(::kill(pid, 0), -1);
  EXPECT_EQ(errno, ESRCH);
}

TEST(ChildProcessTest, MoveAssignKillsPreviousChild) {
  auto first = ChildProcess::Spawn(Sleeper());
  ASSERT_OK(first);
  pid_t first_pid = first->pid();
  auto second = ChildProcess::Spawn(Sleeper());
  ASSERT_OK(second);
  pid_t second_pid = second->pid();
  *first = std::move(second).value();
  errno = 0;
  EXPECT_EQ(::kill(first_pid, 0), -1);
  EXPECT_EQ(errno, ESRCH);
  EXPECT_EQ(first->pid(), second_pid);
  EXPECT_EQ(::kill(second_pid, 0), 0);
}

// --- environment ---------------------------------------------------------------

TEST(ChildProcessTest, EnvIsPassedThrough) {
  SpawnOptions o = Shell("echo $FOO");
  o.env = {"FOO=bar"};
  Captured run = SpawnAndCapture(o);
  EXPECT_EQ(run.out, "bar\n");
}

TEST(ChildProcessTest, ParentEnvIsNotInherited) {
  ASSERT_EQ(::setenv("WB_CHILD_TEST_SECRET", "leak", 1), 0);
  SpawnOptions o = Shell("echo \"[$WB_CHILD_TEST_SECRET]\"");
  o.env = {"FOO=bar"};
  Captured run = SpawnAndCapture(o);
  ::unsetenv("WB_CHILD_TEST_SECRET");
  EXPECT_EQ(run.out, "[]\n");
}

TEST(ChildProcessTest, ArgvIsPassedVerbatim) {
  SpawnOptions o;
  o.path = "/bin/sh";
  o.argv = {"sh", "-c", "printf '%s|' \"$0\" \"$@\"", "zero", "a b", "", "*"};
  Captured run = SpawnAndCapture(o);
  EXPECT_EQ(run.out, "zero|a b||*|");
}

}  // namespace
}  // namespace wb

namespace wb {
namespace {

// Spawns o (a `sleep 1000`) from a forked parent that then exits at once,
// without destructors: the child's pid, -1 if the spawn failed.
pid_t SpawnFromAParentThatDies(const SpawnOptions& o) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return -1;
  pid_t helper = ::fork();
  if (helper == 0) {
    auto c = ChildProcess::Spawn(o);
    pid_t pid = c.ok() ? c->pid() : -1;
    ssize_t ignored = ::write(fds[1], &pid, sizeof pid);
    (void)ignored;
    ::_exit(0);  // the child neither released nor killed
  }
  ::close(fds[1]);
  pid_t child = -1;
  if (::read(fds[0], &child, sizeof child) != static_cast<ssize_t>(sizeof child)) child = -1;
  ::close(fds[0]);
  ::waitpid(helper, nullptr, 0);
  return child;
}

// Whether pid is gone (or a zombie) within 5 s.
bool GoneWithin5s(pid_t pid) {
  auto gone = [&] {
    auto st = ReadFile("/proc/" + std::to_string(pid) + "/stat");
    return !st.ok() || st->find(") Z") != std::string::npos;
  };
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!gone() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  return gone();
}

// A held child whose parent dies before releasing it must not wait forever:
// it notices the parent is gone (the regression: it held a copy of the
// release pipe's write end itself, so its read never saw EOF).
TEST(ChildProcessTest, HeldChildExitsWhenItsParentDies) {
  SpawnOptions o;
  o.path = "/bin/sleep";
  o.argv = {"sleep", "1000"};
  o.hold_until_released = true;
  pid_t child = SpawnFromAParentThatDies(o);
  ASSERT_GT(child, 0);
  EXPECT_TRUE(GoneWithin5s(child)) << "the held child of a dead parent is still waiting";
  ::kill(child, SIGKILL);
}

// --- file size limit -------------------------------------------------------------

TEST(ChildProcessTest, FileSizeLimitFailsWritesBeyondItWithoutKilling) {
  char dir[] = "/tmp/wb-fsize-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string file = std::string(dir) + "/f";
  // dd writes 8 KiB in 1 KiB blocks against a 4 KiB limit: it must get an
  // error (and exit 1), not SIGXFSZ, and the file must stop at the limit.
  SpawnOptions o = Shell("dd if=/dev/zero of=" + file + " bs=1024 count=8 2>/dev/null; echo rc=$?");
  o.file_size_limit = 4096;
  auto run = SpawnAndCapture(o);
  EXPECT_EQ(run.out, "rc=1\n");
  EXPECT_EQ(run.status.code, 0);
  struct stat st;
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 4096);
  ::unlink(file.c_str());
  ::rmdir(dir);
}

// The host's /usr and its top-level links (a merged /usr), as a jail needs
// them to run a dynamically linked program.
Jail SystemJail(const std::string& root, uint32_t id) {
  Jail j;
  j.root = root;
  j.uid = j.gid = id;
  j.entries.push_back({JailEntry::Kind::kBind, "/usr", "/usr", false, false, true});
  for (const char* p : {"/bin", "/lib", "/lib64"}) {
    char buf[256];
    ssize_t n = ::readlink(p, buf, sizeof buf);
    if (n > 0) {
      j.entries.push_back({JailEntry::Kind::kSymlink, p, std::string(buf, n)});
    } else {
      j.entries.push_back({JailEntry::Kind::kBind, p, p, false, false, true});
    }
  }
  return j;
}

constexpr uint32_t kJailId =
    wb::testing::UidBase(wb::testing::UidUser::kVmJailTest) + 1;  // vm_jail_test's is the top

// A program spawned with a group id runs as root's uid with only that group,
// and still dies with its parent: the group changes before the parent-death
// signal is set (the network helpers rely on it: docs/network.md).
TEST(ChildProcessTest, GidIsSetAndTheParentDeathSignalSurvivesIt) {
  if (::geteuid() != 0) GTEST_SKIP() << "setresgid needs root";
  const uint32_t gid = kJailId + 1;
  SpawnOptions o = Shell("echo $(id -u) $(id -g) $(id -G)");
  o.gid = gid;
  auto run = SpawnAndCapture(o);
  EXPECT_EQ(run.out, "0 " + std::to_string(gid) + " " + std::to_string(gid) + "\n");

  SpawnOptions so;
  so.path = "/bin/sleep";
  so.argv = {"sleep", "1000"};
  so.gid = gid;
  so.pdeath_signal = SIGKILL;
  pid_t child = SpawnFromAParentThatDies(so);
  ASSERT_GT(child, 0);
  EXPECT_TRUE(GoneWithin5s(child)) << "a child spawned with a gid outlived its parent";
  ::kill(child, SIGKILL);
}

TEST(ChildJailTest, RunsUnprivilegedInAMinimalRoot) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (mount namespaces, uid changes)";
  const std::string dir = wb::testing::MakeTempDir("wb-child-jail");
  ASSERT_OK(MkdirAll(dir + "/root", 0700));
  ASSERT_OK(WriteFileAtomic(dir + "/data", "hello\n", 0644));
  Jail j = SystemJail(dir + "/root", kJailId);
  j.entries.push_back({JailEntry::Kind::kDir, "/in"});
  j.entries.push_back({JailEntry::Kind::kBind, "/in/data", dir + "/data"});
  j.entries.push_back({JailEntry::Kind::kDevDir, "/dev"});
  j.entries.push_back({JailEntry::Kind::kDevice, "/dev/null", "/dev/null"});
  auto in_pipe = MakePipe(), out_pipe = MakePipe();
  ASSERT_OK(in_pipe);
  ASSERT_OK(out_pipe);
  Pipe in = std::move(*in_pipe), out = std::move(*out_pipe);
  SpawnOptions o;
  o.path = "/usr/bin/cat";  // looked up in the jail
  o.argv = {"cat", "-", "/in/data"};
  o.clone_flags = CLONE_NEWNS;
  o.jail = j;
  o.fds = {{in.read.get(), 0}, {out.write.get(), 1}};
  auto c = ChildProcess::Spawn(o);
  ASSERT_OK(c);
  in.read.reset();
  out.write.reset();
  // cat waits on its stdin: look at it meanwhile.
  const std::string proc = "/proc/" + std::to_string(c->pid());
  auto status = ReadFile(proc + "/status");
  ASSERT_OK(status);
  const std::string id = std::to_string(kJailId);
  EXPECT_NE(status->find("Uid:\t" + id + "\t" + id + "\t" + id + "\t" + id + "\n"),
            std::string::npos)
      << *status;
  EXPECT_NE(status->find("Gid:\t" + id + "\t" + id + "\t" + id + "\t" + id + "\n"),
            std::string::npos);
  EXPECT_NE(status->find("Groups:\t \n"), std::string::npos);  // none: a lone space
  for (const char* cap : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"})
    EXPECT_NE(status->find(std::string(cap) + ":\t0000000000000000\n"), std::string::npos) << cap;
  EXPECT_NE(status->find("NoNewPrivs:\t1\n"), std::string::npos);
  auto top = wb::testing::Entries(proc + "/root");
  std::sort(top.begin(), top.end());
  EXPECT_EQ(top, (std::vector<std::string>{"bin", "dev", "in", "lib", "lib64", "usr"}));
  EXPECT_FALSE(PathExists(proc + "/root/etc/shadow"));
  EXPECT_FALSE(PathExists(proc + "/root" + dir));
  // The device node is the jail user's own.
  struct stat dst;
  ASSERT_EQ(::stat((proc + "/root/dev/null").c_str(), &dst), 0);
  EXPECT_TRUE(S_ISCHR(dst.st_mode));
  EXPECT_EQ(dst.st_uid, kJailId);
  EXPECT_EQ(dst.st_mode & 07777, 0600u);
  // Read-only: the data and the root.
  UniqueFd w(::open((proc + "/root/in/data").c_str(), O_WRONLY | O_CLOEXEC));
  EXPECT_FALSE(w.valid());
  EXPECT_EQ(errno, EROFS);
  in.write.reset();
  auto text = ReadAll(out.read.get());
  ASSERT_OK(text);
  EXPECT_EQ(*text, "hello\n");
  auto st = c->Wait();
  ASSERT_OK(st);
  EXPECT_EQ(st->code, 0);
  // Nothing of the jail reached the host's mount namespace.
  EXPECT_TRUE(wb::testing::Entries(dir + "/root").empty());
  ASSERT_OK(RemoveTree(dir));
}

TEST(ChildJailTest, DeviceNodesWorkForTheJailUser) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (mount namespaces, mknod)";
  const std::string dir = wb::testing::MakeTempDir("wb-child-jail");
  ASSERT_OK(MkdirAll(dir + "/root", 0700));
  Jail j = SystemJail(dir + "/root", kJailId);
  j.entries.push_back({JailEntry::Kind::kDevDir, "/dev"});
  std::string script = "head -c 5 /dev/zero | wc -c; echo x > /dev/null && echo null";
  for (const char* d : {"/dev/null", "/dev/zero"})
    j.entries.push_back({JailEntry::Kind::kDevice, d, d});
  // /dev/kvm may be root's only on the host (0600 here): the jail's node is
  // its user's.
  if (PathExists("/dev/kvm")) {
    j.entries.push_back({JailEntry::Kind::kDevice, "/dev/kvm", "/dev/kvm"});
    script += "; exec 3<>/dev/kvm && echo kvm";
  }
  auto out = MakePipe();
  ASSERT_OK(out);
  SpawnOptions o;
  o.path = "/bin/sh";
  o.argv = {"sh", "-c", script};
  o.jail = j;
  o.fds = {{out->write.get(), 1}};
  auto c = ChildProcess::Spawn(o);
  ASSERT_OK(c);
  out->write.reset();
  auto text = ReadAll(out->read.get());
  ASSERT_OK(text);
  EXPECT_EQ(*text, PathExists("/dev/kvm") ? "5\nnull\nkvm\n" : "5\nnull\n");
  auto st = c->Wait();
  ASSERT_OK(st);
  EXPECT_EQ(st->code, 0);
  ASSERT_OK(RemoveTree(dir));
}

TEST(ChildJailTest, FailuresNameTheStep) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (mount namespaces)";
  const std::string dir = wb::testing::MakeTempDir("wb-child-jail");
  ASSERT_OK(MkdirAll(dir + "/root", 0700));
  SpawnOptions o;
  o.path = "/usr/bin/true";
  o.argv = {"true"};
  o.clone_flags = CLONE_NEWNS;
  // A source that is missing: refused before the clone.
  o.jail = SystemJail(dir + "/root", kJailId);
  o.jail->entries.push_back({JailEntry::Kind::kBind, "/x", dir + "/missing"});
  auto missing = ChildProcess::Spawn(o);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().ToString().find(dir + "/missing (jail entry /x)"), std::string::npos)
      << missing.error().ToString();
  // A mount point whose parent is not there: the child says which entry.
  o.jail = SystemJail(dir + "/root", kJailId);
  o.jail->entries.push_back({JailEntry::Kind::kBind, "/no/null", "/dev/null"});
  auto orphan = ChildProcess::Spawn(o);
  ASSERT_FALSE(orphan.ok());
  EXPECT_NE(orphan.error().ToString().find("jail: entry /no/null"), std::string::npos)
      << orphan.error().ToString();
  // uid 0 is refused.
  o.jail = SystemJail(dir + "/root", kJailId);
  o.jail->uid = 0;
  auto root = ChildProcess::Spawn(o);
  ASSERT_FALSE(root.ok());
  EXPECT_NE(root.error().ToString().find("must not be 0"), std::string::npos);
  // A program that is not in the jail.
  o.jail = SystemJail(dir + "/root", kJailId);
  o.path = dir + "/nothing";
  auto absent = ChildProcess::Spawn(o);
  ASSERT_FALSE(absent.ok());
  EXPECT_NE(absent.error().ToString().find("execve"), std::string::npos);
  ASSERT_OK(RemoveTree(dir));
}

}  // namespace
}  // namespace wb
