// An image's services (docs/services.md) with a real daemon: started at
// pre-boot, before any claim; listed (and their exits) in inspect; the
// create's env in /run/warmbox/envs.json; a bad label refusing a live create
// but not a run; and `warmbox run-code` / POST /v1/sandboxes/{id}/code
// through the agent's tunnel to port 49999.
//
// The "interpreter" here is a busybox `nc -ll -e` shell script answering any
// request with fixed NDJSON lines: it tests the client side's plumbing (CLI,
// HTTP, socket op, the tunnel, the NDJSON reader) only, not the real
// code-interpreter server (the code-interpreter-v1 template's; its
// end-to-end test is the E2B SDK's, tests/e2b).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "base/fs.h"
#include "base/strings.h"
#include "daemon/client.h"
#include "image/default_image.h"
#include "tests/daemon_fixture.h"
#include "tests/test_util.h"
#include "tests/uid_ranges.h"

namespace wb {
namespace {

using nlohmann::json;
using wb::testing::Eventually;
using wb::testing::ProcResult;
using wb::testing::RunProcess;

constexpr uint32_t kBase = wb::testing::UidBase(wb::testing::UidUser::kServicesTest);
const std::string kScripts = std::string(WB_SOURCE_DIR) + "/tests/oci";

// Plumbing only (see the file's comment): reads one request, answers NDJSON
// with the env file's content, then a result, or an error when the code
// says "raise".
constexpr const char* kFakeInterpreter = R"(#!/bin/sh
len=0
while IFS= read -r line; do
  line=$(printf '%s' "$line" | tr -d '\r')
  [ -z "$line" ] && break
  case "$line" in
    [Cc]ontent-[Ll]ength:*) len=${line#*: } ;;
  esac
done
body=$(head -c "$len")
envs=$(sed 's/"/\\"/g' /run/warmbox/envs.json)
printf 'HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n\r\n'
printf '{"type":"number_of_executions","execution_count":1}\n'
printf '{"type":"stdout","text":"envs=%s\\n"}\n' "$envs"
case "$body" in
  *raise*) printf '{"type":"error","name":"ValueError","value":"boom","traceback":"Traceback (most recent call last):\\nValueError: boom"}\n' ;;
  *) printf '{"type":"result","is_main_result":true,"text":"2","html":"<b>2</b>"}\n' ;;
esac
printf '{"type":"end_of_execution"}\n'
)";

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class ServicesTest : public wb::testing::DaemonFixture {
 protected:
  ServicesTest() : DaemonFixture("wb-services-test", kBase) {}

  ProcResult Wb(std::vector<std::string> args, const std::string* in = nullptr) const {
    return RunProcess(Cli(std::move(args)), {}, in);
  }

  // Imports an image named name: the default busybox tree, the fake
  // interpreter at /srv/interp.sh, and a config with this services label.
  void MakeImage(const std::string& name, const std::string& label) {
    const std::string work = state_ + "/work-" + name;
    ASSERT_TRUE(MkdirAll(work, 0755).ok());
    auto built = BuildDefaultImage(work + "/root", 0);
    ASSERT_TRUE(built.ok()) << built.error().ToString();
    ASSERT_TRUE(MkdirAll(work + "/root/srv", 0755).ok());
    ASSERT_TRUE(WriteFileAtomic(work + "/root/srv/interp.sh", kFakeInterpreter).ok());
    ASSERT_EQ(::chmod((work + "/root/srv/interp.sh").c_str(), 0755), 0);
    json config = {{"Env", {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}},
                   {"Labels", {{"org.warmbox.services", label}}}};
    auto made = RunProcess({"/usr/bin/python3", kScripts + "/make_layout.py", work + "/layout",
                            "--tag", "v1", "--layer", work + "/root", "--config", config.dump()});
    ASSERT_EQ(made.code, 0) << made.err;
    auto imported = Wb({"image", "import", work + "/layout", "--name", name});
    ASSERT_EQ(imported.code, 0) << imported.err;
  }

  json Inspect(const std::string& id) const {
    auto r = Wb({"sandbox", "inspect", "--json", "--socket", sock_, id});
    EXPECT_EQ(r.code, 0) << r.err;
    return json::parse(r.out, nullptr, false);
  }
  std::string Create(std::vector<std::string> extra) const {
    std::vector<std::string> args = {"sandbox", "create", "--socket", sock_, "--no-main"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = Wb(args);
    EXPECT_EQ(r.code, 0) << r.err << Log();
    return std::string(Trim(r.out));
  }
  ProcResult Exec(const std::string& id, std::vector<std::string> cmd) const {
    std::vector<std::string> args = {"exec", "--socket", sock_, id, "--"};
    args.insert(args.end(), cmd.begin(), cmd.end());
    return Wb(args);
  }
};

const char* kLabel = R"([
  {"name":"marker","argv":["sh","-c","echo up > /tmp/marker; exec sleep 100000"]},
  {"name":"quick","argv":["sh","-c","exit 3"]},
  {"name":"interp","argv":["sh","-c","sleep 1; exec nc -ll -p 49999 -e /srv/interp.sh"],
   "env":["SVC=1"],"ready_port":49999}
])";

TEST_F(ServicesTest, StartAtPreBootListedEnvFileAndRunCode) {
  MakeImage("svc", kLabel);
  if (HasFatalFailure()) return;
  StartDaemon({"--image", "svc", "--size", "1"});
  // Imported images are named by their canonical reference.
  ASSERT_TRUE(IdleIs("docker.io/library/svc:latest", 1, 20000)) << Log();
  const int64_t before_claim = NowMs();
  const std::string id = Create({"--image", "svc", "-e", "FOO=bar", "-e", "X=1 2"});
  ASSERT_FALSE(id.empty());
  // Ready at the claim: the interpreter (listening only a second after its
  // start) was polled before the sandbox went idle, so the first request
  // right after the create is answered, with no retry.
  auto first = Wb({"run-code", "--socket", sock_, id, "--", "1+1"});
  EXPECT_EQ(first.code, 0) << first.err << Log();

  // Listed in inspect: the two that run and the one that exited (3) before
  // the claim.
  json info = Inspect(id);
  ASSERT_TRUE(info.contains("services")) << info.dump();
  std::map<std::string, json> by_name;
  for (const auto& s : info["services"]) by_name[s["name"]] = s;
  ASSERT_EQ(by_name.size(), 3u) << info.dump();
  EXPECT_TRUE(by_name["marker"]["running"].get<bool>());
  EXPECT_GT(by_name["marker"]["pid"].get<int64_t>(), 0);
  EXPECT_TRUE(by_name["interp"]["running"].get<bool>());
  EXPECT_FALSE(by_name["quick"]["running"].get<bool>());
  EXPECT_EQ(by_name["quick"]["exit_code"], 3) << info.dump();

  // Started before the claim: the agent's own start time of the process.
  auto ps = Wb({"ps", "--socket", sock_, "--json", id});
  ASSERT_EQ(ps.code, 0) << ps.err;
  bool seen = false;
  for (const auto& p : json::parse(ps.out)) {
    if (p.value("tag", "") != "service:marker") continue;
    seen = true;
    EXPECT_LT(p["started_ms"].get<int64_t>(), before_claim) << p.dump();
  }
  EXPECT_TRUE(seen) << ps.out;
  EXPECT_EQ(Exec(id, {"cat", "/tmp/marker"}).out, "up\n");

  // The create's env, bound late: JSON, 0644, readable by a plain user.
  auto envs = Exec(id, {"cat", "/run/warmbox/envs.json"});
  ASSERT_EQ(envs.code, 0) << envs.err;
  EXPECT_EQ(json::parse(envs.out), (json{{"FOO", "bar"}, {"X", "1 2"}})) << envs.out;
  auto mode = Exec(id, {"stat", "-c", "%a %u", "/run/warmbox/envs.json"});
  EXPECT_EQ(mode.out, "644 0\n");
  auto as_user =
      Wb({"exec", "--socket", sock_, "-u", "user", id, "--", "cat", "/run/warmbox/envs.json"});
  EXPECT_EQ(as_user.code, 0) << as_user.err;
  // The service's own env: the image's, then its own; not the claim's.
  auto pid = std::to_string(by_name["interp"]["pid"].get<int64_t>());
  auto environ = Exec(id, {"sh", "-c", "tr '\\0' '\\n' < /proc/" + pid + "/environ"});
  EXPECT_NE(environ.out.find("SVC=1"), std::string::npos) << environ.out;
  EXPECT_EQ(environ.out.find("FOO=bar"), std::string::npos) << environ.out;

  // Another claim gets a fresh sandbox: its own (empty) env file.
  const std::string id2 = Create({"--image", "svc"});
  ASSERT_FALSE(id2.empty());
  EXPECT_EQ(Exec(id2, {"cat", "/run/warmbox/envs.json"}).out, "{}");

  // run-code through the daemon's tunnel to port 49999.
  auto rc = Wb({"run-code", "--socket", sock_, id, "--", "1+1"});
  EXPECT_EQ(rc.code, 0) << rc.err << Log();
  EXPECT_EQ(rc.out, "envs={\"FOO\":\"bar\",\"X\":\"1 2\"}\n2\n");
  EXPECT_NE(rc.err.find("[result also as: html]"), std::string::npos) << rc.err;
  const std::string code = "raise ValueError('boom')";
  auto raised = Wb({"run-code", "--socket", sock_, id}, &code);  // from stdin
  EXPECT_EQ(raised.code, 1) << raised.err;
  EXPECT_NE(raised.err.find("ValueError: boom"), std::string::npos) << raised.err;

  // A service that exits is reported with its exit code.
  auto kill = Wb({"signal", "--socket", sock_, id, by_name["marker"]["pid"].dump(), "KILL"});
  EXPECT_EQ(kill.code, 0) << kill.err;
  EXPECT_TRUE(Eventually([&] {
    const json now = Inspect(id);  // (no range-for over a temporary's member)
    for (const auto& s : now["services"]) {
      if (s["name"] == "marker") return s["exit_code"] == 137;
    }
    return false;
  })) << Inspect(id).dump();
  EXPECT_EQ(Wb({"sandbox", "kill", "--socket", sock_, id}).code, 0);
  EXPECT_EQ(Wb({"sandbox", "kill", "--socket", sock_, id2}).code, 0);
}

// A service whose ready_port never accepts fails its sandbox's pre-boot,
// naming the image, the service and the port: the create that waited for it
// gets that error, the pool's refills log it and back off, nothing goes
// idle, and nothing is left behind.
TEST_F(ServicesTest, ServiceNeverReadyFailsThePreBootNamingIt) {
  MakeImage("deaf", R"([{"name":"deaf","argv":["sleep","100000"],"ready_port":5000,
                         "ready_timeout_s":1}])");
  if (HasFatalFailure()) return;
  MakeImage("gone", R"([{"name":"up","argv":["sleep","100000"]},
                        {"name":"gone","argv":["sh","-c","exit 7"],"ready_port":5001}])");
  if (HasFatalFailure()) return;
  StartDaemon({"--size", "1"});
  const auto t0 = std::chrono::steady_clock::now();
  auto deaf = Wb({"sandbox", "create", "--socket", sock_, "--image", "deaf", "--no-main"});
  EXPECT_EQ(deaf.code, 125) << deaf.out;
  EXPECT_NE(deaf.err.find("service deaf of image docker.io/library/deaf:latest"), std::string::npos)
      << deaf.err;
  EXPECT_NE(deaf.err.find("port 5000 (its ready_port) accepted no connection within 1 s"),
            std::string::npos)
      << deaf.err;
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
  // A service that exits is said at once, with its status, not at the timeout.
  auto gone = Wb({"sandbox", "create", "--socket", sock_, "--image", "gone", "--no-main"});
  EXPECT_EQ(gone.code, 125) << gone.out;
  EXPECT_NE(gone.err.find("service gone of image docker.io/library/gone:latest"), std::string::npos)
      << gone.err;
  EXPECT_NE(gone.err.find("exited (status 7) before port 5001 (its ready_port) accepted"),
            std::string::npos)
      << gone.err;
  // The pools' refills fail the same way (logged, backing off); none idles.
  EXPECT_TRUE(Eventually([&] {
    return Log().find("pool docker.io/library/deaf:latest: creating a sandbox failed") !=
           std::string::npos;
  })) << Log();
  auto status = Wb({"pool", "status", "--json", "--socket", sock_});
  ASSERT_EQ(status.code, 0) << status.err;
  const json pools = json::parse(status.out);
  const json& images = pools.is_array() ? pools : pools["images"];
  for (const auto& p : images) {
    const std::string image = p["image"];
    if (image.find("deaf") == std::string::npos && image.find("gone") == std::string::npos)
      continue;
    EXPECT_EQ(p["idle"], 0) << p.dump();
    EXPECT_GE(p["failed_creations"].get<int64_t>(), 1) << p.dump();
  }
  // The daemon stops while a refill polls: every sandbox goes, none is left.
  StopDaemon();
  EXPECT_TRUE(wb::testing::PidsWithUidIn(kBase, kBase + wb::testing::kRangeIds).empty());
}

TEST_F(ServicesTest, RunCodeWithoutAnInterpreterSaysSo) {
  StartDaemon({"--size", "1"});
  const std::string id = Create({});
  ASSERT_FALSE(id.empty());
  // Only images with services get the env file (their commands get the env).
  EXPECT_EQ(Exec(id, {"sh", "-c", "test -e /run/warmbox/envs.json && echo yes || echo no"}).out,
            "no\n");
  EXPECT_EQ(Inspect(id)["services"], json::array());
  auto rc = Wb({"run-code", "--socket", sock_, id, "--", "1+1"});
  EXPECT_EQ(rc.code, 125);
  EXPECT_NE(rc.err.find("no code interpreter listens on port 49999"), std::string::npos) << rc.err;
  auto both =
      Wb({"run-code", "--socket", sock_, "--language", "python", "--context", "c", id, "--", "1"});
  EXPECT_EQ(both.code, 125);
  EXPECT_NE(both.err.find("not both"), std::string::npos) << both.err;
}

TEST_F(ServicesTest, BadLabelRefusesLiveCreateButNotRuns) {
  MakeImage("badsvc", R"([{"name":"x","argv":[]}])");
  if (HasFatalFailure()) return;
  StartDaemon({"--size", "1"});
  auto r = Wb({"sandbox", "create", "--socket", sock_, "--image", "badsvc", "--no-main"});
  EXPECT_EQ(r.code, 125);
  EXPECT_NE(r.err.find("image docker.io/library/badsvc:latest"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("org.warmbox.services: [0].argv"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("non-empty array"), std::string::npos) << r.err;
  // Plain use of the image is not affected.
  auto run = Wb({"pool", "run", "--socket", sock_, "--image", "badsvc", "--", "echo", "ok"});
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.out, "ok\n");
}

}  // namespace
}  // namespace wb
