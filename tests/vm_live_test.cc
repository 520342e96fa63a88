// Live vm sandboxes with a real daemon (docs/live-sandboxes.md): create,
// exec and a file round trip through the CLI, then restart survival: the
// daemon is SIGKILLed while a process in the VM writes a counter, the next
// daemon on the same state dir takes the VM over (QEMU keeps running; a new
// bridge resynchronises the port) and the counter still advances; the VM
// the killed daemon had not handed out is gone after that start; `pool
// stop` leaves no QEMU and no dir. A paused VM is resumed after the
// restart, and `pool stop --keep-sandboxes` hands both to a third daemon.
// One boot per daemon start besides the two sandboxes (TCG is slow).
#include <gtest/gtest.h>
#include <signal.h>

#include <nlohmann/json.hpp>
#include <string>

#include "base/fs.h"
#include "base/strings.h"
#include "daemon/client.h"
#include "sandbox/sandbox_dir.h"
#include "tests/daemon_fixture.h"
#include "tests/test_util.h"
#include "tests/uid_ranges.h"
#include "tests/vm_fixture.h"

namespace wb {
namespace {

using daemon::PoolClient;
using nlohmann::json;
using wb::testing::Eventually;
using wb::testing::RunProcess;

constexpr uint32_t kBase = wb::testing::UidBase(wb::testing::UidUser::kVmLiveTest);
constexpr int kBootMs = wb::testing::kVmBootMs;

class VmLiveTest : public wb::testing::DaemonFixture {
 protected:
  VmLiveTest() : DaemonFixture("wb-vm-live-test", kBase) {}
  void SetUp() override {
    std::string why = wb::testing::VmProbe();
    if (!why.empty()) GTEST_SKIP() << why;
    DaemonFixture::SetUp();
  }
  void StartVmDaemon() { StartDaemon({"--driver", "vm", "--size", "1", "--memory", "256m"}); }
  // A warmbox CLI command on this test's daemon.
  wb::testing::ProcResult Warmbox(std::vector<std::string> args) const {
    return RunProcess(Cli(std::move(args)));
  }
  // The counter the background process writes, -1 if unreadable.
  int Counter(const std::string& id) const {
    auto r = Warmbox({"exec", "--socket", sock_, id, "--", "cat", "/tmp/counter"});
    if (r.code != 0) return -1;
    auto v = ParseUint(Trim(r.out), "counter");
    return v.ok() ? static_cast<int>(*v) : -1;
  }
  json Call(const json& req) const {
    auto body = PoolClient(sock_).RoundTrip(req.dump());
    EXPECT_TRUE(body.ok()) << (body.ok() ? "" : body.error().ToString());
    return body.ok() ? json::parse(*body) : json::object();
  }
  // The last n= of a sandbox's main log, -1 if none.
  int LastLogged(const std::string& id) const {
    json r = Call({{"op", "sandbox_logs"}, {"id", id}});
    auto lines = r.value("lines", json::array());
    if (lines.empty()) return -1;
    const std::string last = lines.back().get<std::string>();
    auto pos = last.find("n=");
    if (pos == std::string::npos) return -1;
    auto v = ParseUint(Trim(last.substr(pos + 2)), "n");
    return v.ok() ? static_cast<int>(*v) : -1;
  }
  // Sandbox dirs, and which of them hold a live record.
  std::vector<std::string> Dirs(bool live) const {
    std::vector<std::string> out;
    for (const auto& n : wb::testing::Entries(SandboxesDir(state_))) {
      const std::string d = SandboxesDir(state_) + "/" + n;
      if (PathExists(d + "/live.json") == live) out.push_back(d);
    }
    return out;
  }
};

TEST_F(VmLiveTest, CreateExecFilesAndRestartSurvival) {
  StartVmDaemon();
  // A miss boots a VM for the create (the pool refills beside it).
  auto c = Warmbox({"sandbox", "create", "--socket", sock_, "--driver", "vm", "--no-main",
                    "--timeout", "3600", "--metadata", "kind=vm"});
  ASSERT_EQ(c.code, 0) << c.err << Log();
  const std::string id = std::string(Trim(c.out));
  ASSERT_EQ(id.size(), 32u) << c.out;

  auto e = Warmbox({"exec", "--socket", sock_, id, "--", "sh", "-c", "echo hi; exit 3"});
  EXPECT_EQ(e.code, 3) << e.err;
  EXPECT_EQ(e.out, "hi\n");

  // A file round trip, both ways, through the VM's channels.
  std::string data(300000, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7 + (i >> 9));
  ASSERT_TRUE(WriteFileAtomic(state_ + "/up.bin", data).ok());
  auto up = Warmbox({"cp", "--socket", sock_, state_ + "/up.bin", id + ":/tmp/up.bin"});
  ASSERT_EQ(up.code, 0) << up.err;
  auto down = Warmbox({"cp", "--socket", sock_, id + ":/tmp/up.bin", state_ + "/down.bin"});
  ASSERT_EQ(down.code, 0) << down.err;
  auto back = ReadFile(state_ + "/down.bin");
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(*back == data) << back->size();

  // A background process writing a counter.
  auto d = Warmbox({"exec", "-d", "--socket", sock_, id, "--", "sh", "-c",
                    "i=0; while :; do echo $i > /tmp/counter.t; mv /tmp/counter.t /tmp/counter; "
                    "i=$((i+1)); sleep 0.1; done"});
  ASSERT_EQ(d.code, 0) << d.err;
  ASSERT_TRUE(Eventually([&] { return Counter(id) >= 2; }, 60000)) << Log();

  // A second one, with a main that logs, paused across the restart: its
  // channels and the main's log resume when it is resumed.
  json made =
      Call({{"op", "sandbox_create"},
            {"driver", "vm"},
            {"timeout", 3600},
            {"main", {"sh", "-c", "i=0; while :; do echo n=$i; i=$((i+1)); sleep 0.2; done"}}});
  ASSERT_TRUE(made.value("ok", false)) << made.dump() << Log();
  const std::string paused_id = made["sandbox"]["id"];
  ASSERT_TRUE(Eventually([&] { return LastLogged(paused_id) >= 1; }, 60000)) << Log();
  ASSERT_EQ(Call({{"op", "sandbox_pause"}, {"id", paused_id}})["ok"], true);

  auto live_dirs = Dirs(true);
  ASSERT_EQ(live_dirs.size(), 2u);
  if (ReadFile(live_dirs[0] + "/live.json")->find(id) == std::string::npos)
    std::swap(live_dirs[0], live_dirs[1]);
  auto rec = json::parse(*ReadFile(live_dirs[0] + "/live.json"));
  const pid_t qemu = rec["host_pid"].get<pid_t>();
  const uint64_t qemu_start = ProcessStartTime(qemu);
  ASSERT_NE(qemu_start, 0u);
  // The pool's idle VM (never handed out), once it is there.
  ASSERT_TRUE(IdleIs("busybox", 1, kBootMs)) << Log();
  auto pool_dirs = Dirs(false);
  ASSERT_EQ(pool_dirs.size(), 1u);
  // Its QEMU (jailed: its command line names no host path), from its cgroup.
  auto idle_rec = ReadSandboxRecord(pool_dirs[0]);
  ASSERT_TRUE(idle_rec.ok() && !idle_rec->cgroups.empty());
  auto idle_procs = ReadFile(idle_rec->cgroups[0] + "/cgroup.procs");
  ASSERT_TRUE(idle_procs.ok());
  auto idle_qemu = ParseUint(Trim(*idle_procs), "pid");
  ASSERT_TRUE(idle_qemu.ok()) << *idle_procs;
  const pid_t idle_pid = static_cast<pid_t>(*idle_qemu);
  const uint64_t idle_start = ProcessStartTime(idle_pid);
  EXPECT_NE(idle_start, 0u);

  // The daemon dies; the VMs do not (no parent-death signal on QEMU).
  ASSERT_TRUE(daemon_.Signal(SIGKILL).ok());
  ASSERT_TRUE(daemon_.Wait().ok());
  EXPECT_EQ(ProcessStartTime(qemu), qemu_start) << "the live VM died with its daemon";
  const int before = Counter(id);  // no daemon: fails
  EXPECT_EQ(before, -1);

  StartVmDaemon();
  json list = Call({{"op", "sandbox_list"}});
  ASSERT_EQ(list["sandboxes"].size(), 2u) << list.dump() << Log();
  json info = Call({{"op", "sandbox_inspect"}, {"id", id}});
  EXPECT_EQ(info["sandbox"]["state"], "running") << info.dump();
  EXPECT_EQ(info["sandbox"]["metadata"]["kind"], "vm");
  EXPECT_EQ(Call({{"op", "sandbox_inspect"}, {"id", paused_id}})["sandbox"]["state"], "paused");
  EXPECT_EQ(ProcessStartTime(qemu), qemu_start);
  // The unclaimed VM the killed daemon left was killed by this start's gc.
  EXPECT_FALSE(PathExists(pool_dirs[0]));
  EXPECT_TRUE(Eventually([&] { return ProcessStartTime(idle_pid) != idle_start; }, 10000));

  // The counter still advances, seen through the new daemon's bridge.
  const int after = Counter(id);
  ASSERT_GE(after, 2) << Log();
  EXPECT_TRUE(Eventually([&] { return Counter(id) > after + 2; }, 30000))
      << "the counter did not advance after the restart" << Log();
  auto ps = Warmbox({"ps", "--socket", sock_, id});
  EXPECT_EQ(ps.code, 0) << ps.err;
  EXPECT_NE(ps.out.find("while"), std::string::npos) << ps.out;
  auto again = Warmbox({"exec", "--socket", sock_, id, "--", "cat", "/tmp/up.bin"});
  EXPECT_EQ(again.code, 0);
  EXPECT_TRUE(again.out == data) << again.out.size();

  // The paused one, resumed: its main runs on and is logged again.
  const int logged = LastLogged(paused_id);
  ASSERT_EQ(Call({{"op", "sandbox_resume"}, {"id", paused_id}})["ok"], true) << Log();
  EXPECT_TRUE(Eventually([&] { return LastLogged(paused_id) > logged + 2; }, 30000))
      << "the main's log did not resume" << Log();
  auto ep = Warmbox({"exec", "--socket", sock_, paused_id, "--", "echo", "ok"});
  EXPECT_EQ(ep.out, "ok\n") << ep.err;

  // pool stop --keep-sandboxes leaves both to the next daemon, which takes
  // them over (a clean hand-over: the old bridge ends, the new one resets).
  auto keep = Warmbox({"pool", "stop", "--socket", sock_, "--keep-sandboxes"});
  EXPECT_EQ(keep.code, 0) << keep.err;
  ASSERT_TRUE(daemon_.Wait().ok());
  EXPECT_EQ(ProcessStartTime(qemu), qemu_start);
  StartVmDaemon();
  EXPECT_EQ(Call({{"op", "sandbox_list"}})["sandboxes"].size(), 2u) << Log();
  const int kept = Counter(id);
  EXPECT_GE(kept, after) << Log();
  EXPECT_TRUE(Eventually([&] { return Counter(id) > kept; }, 30000)) << Log();

  // pool stop: nothing is left, no QEMU, no dir.
  auto stop = Warmbox({"pool", "stop", "--socket", sock_});
  EXPECT_EQ(stop.code, 0) << stop.err;
  auto st = daemon_.Wait();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->code, 0) << Log();
  EXPECT_TRUE(Eventually([&] { return ProcessStartTime(qemu) == 0; }, 10000));
  EXPECT_TRUE(wb::testing::QemuPids(kBase).empty());
  EXPECT_TRUE(wb::testing::DirsBelow(SandboxesDir(state_)).empty());
}

}  // namespace
}  // namespace wb
