// End-to-end tests of live sandboxes (docs/live-sandboxes.md) with a real
// daemon: the CLI and the socket ops, timeouts, pause, the main's log,
// --max-sandboxes, restart survival, and that nothing is left behind.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/fs.h"
#include "base/strings.h"
#include "daemon/client.h"
#include "sandbox/cgroup.h"
#include "sandbox/sandbox_dir.h"
#include "tests/daemon_fixture.h"
#include "tests/test_util.h"
#include "tests/uid_ranges.h"

namespace wb {
namespace {

using daemon::PoolClient;
using nlohmann::json;
using wb::testing::Eventually;
using wb::testing::RunProcess;

constexpr uint32_t kBase = wb::testing::UidBase(wb::testing::UidUser::kLiveTest);

class LiveTest : public wb::testing::DaemonFixture {
 protected:
  LiveTest() : DaemonFixture("wb-live-test", kBase) {}

  json Call(const json& req) const {
    auto body = PoolClient(sock_).RoundTrip(req.dump());
    EXPECT_TRUE(body.ok()) << (body.ok() ? "" : body.error().ToString());
    if (!body.ok()) return json::object();
    return json::parse(*body);
  }
  // Creates through the socket; the sandbox's JSON (empty on failure).
  json Create(json req) const {
    req["op"] = "sandbox_create";
    json r = Call(req);
    EXPECT_TRUE(r.value("ok", false)) << r.dump() << Log();
    return r.value("sandbox", json::object());
  }
  json Inspect(const std::string& id) const {
    return Call({{"op", "sandbox_inspect"}, {"id", id}});
  }
  std::vector<std::string> Logs(const std::string& id) const {
    json r = Call({{"op", "sandbox_logs"}, {"id", id}});
    std::vector<std::string> out;
    for (const auto& l : r.value("lines", json::array())) out.push_back(l.get<std::string>());
    return out;
  }
  // The sandbox dir of a live id (from the records on disk).
  std::string DirOf(const std::string& id) const {
    for (const auto& n : wb::testing::Entries(state_ + "/sandboxes")) {
      auto text = ReadFile(state_ + "/sandboxes/" + n + "/live.json");
      if (text.ok() && text->find(id) != std::string::npos) return state_ + "/sandboxes/" + n;
    }
    return "";
  }
  // The cgroup dirs a sandbox dir's id would have.
  static std::vector<std::string> CgroupDirsOf(const std::string& sandbox_id) {
    auto layout = HostCgroupLayout();
    if (!layout.ok()) return {};
    return PlanSandboxCgroup(*layout, sandbox_id, Limits{}, "").dirs;
  }
  static bool AnyExists(const std::vector<std::string>& paths) {
    for (const auto& p : paths) {
      if (PathExists(p)) return true;
    }
    return false;
  }
  static bool MountsMention(const std::string& text) {
    for (const auto& m : wb::testing::MountPoints()) {
      if (m.find(text) != std::string::npos) return true;
    }
    return false;
  }
};

TEST_F(LiveTest, CreateListInspectKillThroughCliAndSocket) {
  StartDaemon({"--size", "1"});
  auto c = RunProcess(Cli({"sandbox", "create", "--socket", sock_, "--no-main", "--metadata",
                           "team=a", "--metadata", "n=1", "-e", "GREETING=hi"}));
  ASSERT_EQ(c.code, 0) << c.err << Log();
  std::string a = std::string(Trim(c.out));
  EXPECT_TRUE(a.size() == 32 && a.find_first_not_of("0123456789abcdef") == std::string::npos) << a;
  json b = Create({{"metadata", {{"team", "b"}}}, {"no_main", true}});
  std::string bid = b.value("id", "");
  ASSERT_EQ(bid.size(), 32u);
  EXPECT_NE(a, bid);
  EXPECT_EQ(b["state"], "running");
  EXPECT_GT(b["expires_ms"].get<int64_t>(), b["created_ms"].get<int64_t>());

  auto ls = RunProcess(Cli({"sandbox", "ls", "--socket", sock_, "--json"}));
  ASSERT_EQ(ls.code, 0) << ls.err;
  json all = json::parse(ls.out);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0]["id"], a);  // by creation time
  auto filtered =
      RunProcess(Cli({"sandbox", "ls", "--socket", sock_, "--json", "--metadata", "team=b"}));
  json f = json::parse(filtered.out);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0]["id"], bid);
  json none = Call({{"op", "sandbox_list"}, {"metadata", {{"team", "zzz"}}}});
  EXPECT_TRUE(none["sandboxes"].empty());
  auto table = RunProcess(Cli({"sandbox", "ls", "--socket", sock_}));
  EXPECT_NE(table.out.find("team=a"), std::string::npos) << table.out;

  auto ins = RunProcess(Cli({"sandbox", "inspect", "--socket", sock_, a, "--json"}));
  ASSERT_EQ(ins.code, 0) << ins.err;
  json ia = json::parse(ins.out);
  EXPECT_EQ(ia["metadata"]["team"], "a");
  EXPECT_EQ(ia["env"][0], "GREETING=hi");
  EXPECT_GT(ia["pids_current"].get<uint64_t>(), 0u);
  EXPECT_GT(ia["memory_current"].get<uint64_t>(), 0u);
  // The writable layer's statfs: something is used, under a positive cap.
  EXPECT_GT(ia["disk_total"].get<uint64_t>(), ia["disk_used"].get<uint64_t>());

  std::string dir = DirOf(a);
  ASSERT_FALSE(dir.empty());
  struct stat st;
  ASSERT_EQ(::stat((dir + "/live.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  auto rec = json::parse(*ReadFile(dir + "/live.json"));
  std::string sid = rec["sandbox"];
  pid_t pid = rec["host_pid"].get<pid_t>();
  auto cgroups = CgroupDirsOf(sid);
  EXPECT_TRUE(AnyExists(cgroups));

  auto k = RunProcess(Cli({"sandbox", "kill", "--socket", sock_, a}));
  EXPECT_EQ(k.code, 0) << k.err;
  // Kill answers after the teardown: nothing of it is left.
  EXPECT_FALSE(PathExists(dir));
  EXPECT_EQ(ProcessStartTime(pid), 0u);
  EXPECT_FALSE(AnyExists(cgroups));
  EXPECT_FALSE(MountsMention(sid));
  json kb = Call({{"op", "sandbox_kill"}, {"id", bid}});
  EXPECT_EQ(kb, json({{"ok", true}}));
  EXPECT_TRUE(Call({{"op", "sandbox_list"}})["sandboxes"].empty());
}

TEST_F(LiveTest, UnknownIdIsNotFound) {
  StartDaemon({"--size", "1"});
  std::string id(32, 'a');
  for (const char* op :
       {"sandbox_inspect", "sandbox_kill", "sandbox_pause", "sandbox_resume", "sandbox_logs"}) {
    json r = Call({{"op", op}, {"id", id}});
    EXPECT_EQ(r["ok"], false) << op;
    EXPECT_EQ(r["kind"], "not_found") << op << r.dump();
  }
  EXPECT_EQ(Call({{"op", "sandbox_set_timeout"}, {"id", id}, {"timeout", 5}})["kind"], "not_found");
  auto cli = RunProcess(Cli({"sandbox", "inspect", "--socket", sock_, id}));
  EXPECT_EQ(cli.code, 125);
  EXPECT_NE(cli.err.find("no such live sandbox"), std::string::npos) << cli.err;
  EXPECT_EQ(Call({{"op", "sandbox_kill"}})["kind"], "bad_request");
}

TEST_F(LiveTest, TimeoutKillsAndSetTimeoutExtends) {
  StartDaemon({"--size", "2"});
  json a = Create({{"timeout", 1}, {"no_main", true}});
  json b = Create({{"timeout", 1}, {"no_main", true}});
  std::string bdir = DirOf(b["id"]);
  json ext = Call({{"op", "sandbox_set_timeout"}, {"id", b["id"]}, {"timeout", 60}});
  ASSERT_TRUE(ext.value("ok", false)) << ext.dump();
  EXPECT_GT(ext["sandbox"]["expires_ms"].get<int64_t>(), b["expires_ms"].get<int64_t>() + 50000);
  // a expires and is killed; b, extended, lives on.
  EXPECT_TRUE(Eventually([&] { return Inspect(a["id"])["kind"] == "not_found"; }, 10000));
  EXPECT_EQ(Inspect(b["id"])["sandbox"]["state"], "running");
  auto rec = json::parse(*ReadFile(bdir + "/live.json"));
  EXPECT_EQ(rec["expires_ms"], ext["sandbox"]["expires_ms"]);
  // The daemon caps timeouts at --max-sandbox-timeout (default 86400 s).
  json capped = Call({{"op", "sandbox_set_timeout"}, {"id", b["id"]}, {"timeout", 10000000}});
  EXPECT_LE(capped["sandbox"]["expires_ms"].get<int64_t>() -
                capped["sandbox"]["created_ms"].get<int64_t>(),
            86400000 + 600000);
}

TEST_F(LiveTest, OnTimeoutPause) {
  StartDaemon({"--size", "1"});
  json a = Create({{"timeout", 1}, {"on_timeout", "pause"}, {"no_main", true}});
  EXPECT_TRUE(Eventually([&] { return Inspect(a["id"])["sandbox"]["state"] == "paused"; }, 10000));
  json again = Call({{"op", "sandbox_pause"}, {"id", a["id"]}});
  EXPECT_EQ(again["kind"], "failed_precondition");
  EXPECT_EQ(Call({{"op", "sandbox_resume"}, {"id", a["id"]}})["ok"], true);
  EXPECT_EQ(Inspect(a["id"])["sandbox"]["state"], "running");
}

TEST_F(LiveTest, MaxSandboxesGivesBusyAtOnce) {
  StartDaemon({"--size", "1", "--max-sandboxes", "2"});
  Create({{"no_main", true}});
  Create({{"no_main", true}});
  auto t0 = std::chrono::steady_clock::now();
  json third = Call({{"op", "sandbox_create"}, {"no_main", true}});
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  EXPECT_EQ(third["kind"], "busy") << third.dump();
  EXPECT_LT(ms, 1000);
  auto cli = RunProcess(Cli({"sandbox", "create", "--socket", sock_, "--no-main"}));
  EXPECT_EQ(cli.code, 125);
  EXPECT_NE(cli.err.find("--max-sandboxes 2"), std::string::npos) << cli.err;
}

TEST_F(LiveTest, PauseStopsCpuAndResumeRestartsIt) {
  StartDaemon({"--size", "1"});
  json a = Create({{"main", {"sh", "-c", "while :; do :; done"}}});
  std::string id = a["id"];
  auto cpu = [&] { return Inspect(id)["sandbox"]["cpu_usage_us"].get<uint64_t>(); };
  uint64_t c0 = cpu();
  ASSERT_TRUE(Eventually([&] { return cpu() > c0 + 50000; }, 10000)) << "the main never ran";
  ASSERT_EQ(Call({{"op", "sandbox_pause"}, {"id", id}})["ok"], true);
  EXPECT_EQ(Inspect(id)["sandbox"]["state"], "paused");
  uint64_t p0 = cpu();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // an interval, not a sync
  uint64_t p1 = cpu();
  EXPECT_LE(p1 - p0, 2000u) << "a paused sandbox used CPU";
  auto cli = RunProcess(Cli({"sandbox", "resume", "--socket", sock_, id}));
  EXPECT_EQ(cli.code, 0) << cli.err;
  EXPECT_TRUE(Eventually([&] { return cpu() > p1 + 50000; }, 10000)) << "did not resume";
}

// "2026-12-05T02:03:54.427Z stdout text" (no std::regex: GCC 12's <regex>
// does not build under -fsanitize=address -Werror).
bool LooksLikeLogLine(const std::string& l) {
  const std::string shape = "dddd-dd-ddTdd:dd:dd.dddZ ";
  if (l.size() < shape.size()) return false;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 'd' ? !std::isdigit(static_cast<unsigned char>(l[i])) : l[i] != shape[i]) {
      return false;
    }
  }
  std::string rest = l.substr(shape.size());
  return rest.rfind("stdout ", 0) == 0 || rest.rfind("stderr ", 0) == 0;
}

TEST_F(LiveTest, MainLogIsCapturedBoundedAndTimestamped) {
  StartDaemon({"--size", "1"});
  // ~3 MB of stdout, then a line on stderr and exit 3.
  json a = Create({{"main",
                    {"sh", "-c",
                     "i=0; while [ $i -lt 40000 ]; do echo "
                     "line-$i-0123456789012345678901234567890123456789012345678901234567890; "
                     "i=$((i+1)); done; echo the-end >&2; exit 3"}}});
  std::string id = a["id"];
  EXPECT_GT(a["main_pid"].get<int64_t>(), 0);
  ASSERT_TRUE(Eventually([&] { return Inspect(id)["sandbox"]["main_exit_code"] == 3; }, 60000))
      << Inspect(id).dump();
  auto lines = Logs(id);
  ASSERT_FALSE(lines.empty());
  for (const auto& l : lines) ASSERT_TRUE(LooksLikeLogLine(l)) << l;
  // The two streams are two pipes: the agent reads whichever is ready, so
  // the stderr line may come before the stdout lines still in the stdout
  // pipe's buffer when it was written (64 KiB, about 700 of these lines; a
  // slow reader, as under ASan, sees all of them). Both are near the end.
  auto near_end = [&](const std::string& want) {
    size_t from = lines.size() > 2000 ? lines.size() - 2000 : 0;
    for (size_t i = from; i < lines.size(); ++i) {
      if (lines[i].find(want) != std::string::npos) return true;
    }
    return false;
  };
  EXPECT_TRUE(near_end("stderr the-end")) << lines.back();
  EXPECT_TRUE(near_end("stdout line-39999-")) << lines.back();
  std::string dir = DirOf(id);
  struct stat s0, s1;
  ASSERT_EQ(::stat((dir + "/main.log").c_str(), &s0), 0);
  ASSERT_EQ(::stat((dir + "/main.log.1").c_str(), &s1), 0);
  EXPECT_LE(s0.st_size, 512 << 10);
  EXPECT_LE(s1.st_size, 512 << 10);
  EXPECT_GT(s0.st_size + s1.st_size, 512 << 10);
  auto tail = RunProcess(Cli({"logs", "--socket", sock_, "--tail", "2", id}));
  EXPECT_EQ(tail.code, 0) << tail.err;
  EXPECT_EQ(Split(std::string(Trim(tail.out)), '\n').size(), 2u) << tail.out;
}

TEST_F(LiveTest, FollowStreamsNewLines) {
  StartDaemon({"--size", "1"});
  json a = Create(
      {{"main", {"sh", "-c", "i=0; while :; do echo tick-$i; i=$((i+1)); sleep 0.05; done"}}});
  std::string id = a["id"];
  std::vector<std::string> got;
  auto r =
      PoolClient(sock_).Stream(json({{"op", "sandbox_logs"}, {"id", id}, {"follow", true}}).dump(),
                               [&](const std::string& body) {
                                 json j = json::parse(body);
                                 if (j.contains("line")) got.push_back(j["line"]);
                                 return got.size() < 5;
                               });
  EXPECT_TRUE(r.ok());
  ASSERT_EQ(got.size(), 5u);
  EXPECT_NE(got[0].find("stdout tick-"), std::string::npos);
}

TEST_F(LiveTest, KilledDaemonsSandboxesAreTakenOverByTheNext) {
  StartDaemon({"--size", "1"});
  std::vector<json> made;
  made.push_back(
      Create({{"metadata", {{"role", "counter"}}},
              {"main", {"sh", "-c", "i=0; while :; do echo n=$i; i=$((i+1)); sleep 0.05; done"}}}));
  for (int i = 0; i < 4; ++i)
    made.push_back(
        Create({{"metadata", {{"n", std::to_string(i)}}}, {"no_main", true}, {"timeout", 600}}));
  std::string counter = made[0]["id"];
  auto last_n = [&]() -> int {
    auto lines = Logs(counter);
    if (lines.empty()) return -1;
    auto pos = lines.back().find("n=");
    return pos == std::string::npos ? -1 : std::stoi(lines.back().substr(pos + 2));
  };
  ASSERT_TRUE(Eventually([&] { return last_n() >= 3; }, 10000));
  ASSERT_TRUE(daemon_.Signal(SIGKILL).ok());
  ASSERT_TRUE(daemon_.Wait().ok());
  StartDaemon({"--size", "1"});
  json list = Call({{"op", "sandbox_list"}})["sandboxes"];
  ASSERT_EQ(list.size(), 5u) << Log();
  for (const auto& m : made) {
    json i = Inspect(m["id"]);
    ASSERT_TRUE(i.value("ok", false)) << i.dump();
    EXPECT_EQ(i["sandbox"]["metadata"], m["metadata"]);
    EXPECT_EQ(i["sandbox"]["expires_ms"], m["expires_ms"]);
    EXPECT_EQ(i["sandbox"]["state"], "running");
  }
  int after_restart = last_n();
  EXPECT_TRUE(Eventually([&] { return last_n() > after_restart + 3; }, 10000))
      << "the counter's log did not advance after the restart";
  // Still usable: a kill works on an adopted sandbox and leaves nothing.
  std::string dir = DirOf(counter);
  EXPECT_EQ(Call({{"op", "sandbox_kill"}, {"id", counter}})["ok"], true);
  EXPECT_FALSE(PathExists(dir));
  // pool stop --keep-sandboxes leaves the other 4 to the next daemon.
  auto keep = RunProcess(Cli({"pool", "stop", "--socket", sock_, "--keep-sandboxes"}));
  EXPECT_EQ(keep.code, 0) << keep.err;
  ASSERT_TRUE(daemon_.Wait().ok());
  StartDaemon({"--size", "1"});
  EXPECT_EQ(Call({{"op", "sandbox_list"}})["sandboxes"].size(), 4u) << Log();
  auto stop = RunProcess(Cli({"pool", "stop", "--socket", sock_}));
  EXPECT_EQ(stop.code, 0);
  auto st = daemon_.Wait();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->code, 0) << Log();
  // The adopted agents were the killed daemon's children: whoever inherited
  // them (init, or a subreaper above this test) reaps their zombies.
  EXPECT_TRUE(Eventually([&] { return SandboxProcesses() == 0; }, 5000)) << Log();
  EXPECT_TRUE(wb::testing::DirsBelow(state_ + "/sandboxes").empty());
}

TEST_F(LiveTest, HundredLiveSandboxesAndStopLeavesNothing) {
  StartDaemon({"--size", "4", "--creation-cap", "4"});
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        auto body = PoolClient(sock_).RoundTrip(R"({"op":"sandbox_create","no_main":true})");
        if (body.ok() && json::parse(*body).value("ok", false)) ++ok;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok, 100) << Log();
  EXPECT_EQ(Call({{"op", "sandbox_list"}})["sandboxes"].size(), 100u);
  json busy = Call({{"op", "sandbox_create"}, {"no_main", true}});
  EXPECT_EQ(busy["kind"], "busy");
  auto status = RunProcess(Cli({"pool", "status", "--socket", sock_, "--format", "prometheus"}));
  EXPECT_NE(status.out.find("warmbox_live_sandboxes{state=\"running\"} 100"), std::string::npos)
      << status.out.substr(status.out.find("warmbox_live")) << status.err << Log();
  std::vector<std::string> sids;
  for (const auto& n : wb::testing::Entries(state_ + "/sandboxes")) sids.push_back(n);
  auto stop = RunProcess(Cli({"pool", "stop", "--socket", sock_}));
  EXPECT_EQ(stop.code, 0);
  ASSERT_TRUE(daemon_.Wait().ok());
  EXPECT_EQ(SandboxProcesses(), 0u);
  EXPECT_TRUE(wb::testing::DirsBelow(state_ + "/sandboxes").empty());
  for (const auto& sid : sids) {
    EXPECT_FALSE(AnyExists(CgroupDirsOf(sid))) << sid;
    EXPECT_FALSE(MountsMention(sid)) << sid;
  }
}

}  // namespace
}  // namespace wb
