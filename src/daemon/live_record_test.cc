#include "daemon/live_record.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "base/fs.h"
#include "tests/test_util.h"

namespace wb::daemon {
namespace {

LiveRecord Sample() {
  LiveRecord r;
  r.id = "0123456789abcdef0123456789abcdef";
  r.sandbox = "3f2a9c0d11e4";
  r.image = "busybox";
  r.driver = "ns";
  r.created_ms = 1796050000123;
  r.expires_ms = 1796050300123;
  r.on_timeout = "pause";
  r.metadata = {{"team", "a"}, {"k", "v w"}};
  r.env = {"A=1", "B=x=y"};
  r.user = "nobody";
  r.cwd = "/tmp";
  r.memory_bytes = 256u << 20;
  r.pids = 64;
  r.cpus = 0.5;
  r.main = {"sh", "-c", "echo hi"};
  r.main_pid = 12;
  r.main_exit_code = 3;
  r.main_offset = 4096;
  r.state = "paused";
  r.host_pid = 4242;
  r.host_start = 987654;
  r.network.mode = NetworkMode::kEgress;
  r.network.allow_out = {"example.com", "203.0.113.0/24"};
  r.network.deny_out = {"203.0.113.66"};
  r.network.ports = {PublishedPort{"127.0.0.1", 18080, 8080}};
  return r;
}

TEST(LiveRecordTest, RoundTrips) {
  LiveRecord r = Sample();
  auto back = ParseLiveRecord(ToJson(r), "x");
  ASSERT_TRUE(back.ok()) << back.error().ToString();
  EXPECT_EQ(ToJson(*back), ToJson(r));
  EXPECT_EQ(back->metadata, r.metadata);
  EXPECT_EQ(back->main_exit_code, 3);
  EXPECT_EQ(back->host_pid, 4242);
  EXPECT_EQ(back->network, r.network);
  r.main_exit_code.reset();
  back = ParseLiveRecord(ToJson(r), "x");
  ASSERT_TRUE(back.ok());
  EXPECT_FALSE(back->main_exit_code);
}

TEST(LiveRecordTest, BadFilesGiveClearErrors) {
  auto err = [](const std::string& text) {
    auto r = ParseLiveRecord(text, "/s/live.json");
    EXPECT_FALSE(r.ok()) << text;
    return r.ok() ? std::string() : r.error().ToString();
  };
  EXPECT_NE(err("{").find("/s/live.json"), std::string::npos);
  EXPECT_NE(err("{").find("not JSON"), std::string::npos);
  EXPECT_NE(err("[]").find("expected a JSON object"), std::string::npos);
  EXPECT_NE(err("{}").find("version: missing"), std::string::npos);
  nlohmann::json j = nlohmann::json::parse(ToJson(Sample()));
  auto with = [&](const char* key, nlohmann::json v) {
    auto c = j;
    if (v.is_discarded())
      c.erase(key);
    else
      c[key] = v;
    return err(c.dump());
  };
  EXPECT_NE(with("version", 2).find("unsupported version 2"), std::string::npos);
  EXPECT_NE(with("id", "ABC").find("id: expected 32 lower-case hex digits"), std::string::npos);
  EXPECT_NE(with("driver", "xen").find("driver: expected ns or vm"), std::string::npos);
  EXPECT_NE(with("on_timeout", "stop").find("on_timeout"), std::string::npos);
  EXPECT_NE(with("metadata", nlohmann::json{{"a", 1}}).find("metadata"), std::string::npos);
  EXPECT_NE(with("env", "A=1").find("env: expected an array of strings"), std::string::npos);
  EXPECT_NE(with("host_pid", -1).find("host_pid: not a pid"), std::string::npos);
  EXPECT_NE(with("state", "dead").find("state"), std::string::npos);
  EXPECT_NE(with("image", nlohmann::json::value_t::discarded).find("image: missing"),
            std::string::npos);
  EXPECT_NE(with("main_offset", -5).find("main_offset"), std::string::npos);
  EXPECT_NE(with("network", nlohmann::json{{"mode", "open"}}).find("network"), std::string::npos);
  // An older daemon's record has no network: none.
  nlohmann::json o = j;
  o.erase("network");
  auto older = ParseLiveRecord(o.dump(), "x");
  ASSERT_TRUE(older.ok()) << older.error().ToString();
  EXPECT_EQ(older->network.mode, NetworkMode::kNone);
}

TEST(LiveRecordTest, IdsAre32LowerHexDigits) {
  EXPECT_TRUE(IsLiveId("0123456789abcdef0123456789abcdef"));
  EXPECT_FALSE(IsLiveId("0123456789ABCDEF0123456789abcdef"));
  EXPECT_FALSE(IsLiveId("0123456789abcdef"));
  EXPECT_FALSE(IsLiveId("0123456789abcdef0123456789abcdeg"));
}

TEST(LiveRecordTest, FileIsWrittenAtomically0600) {
  std::string dir = wb::testing::MakeTempDir("wb-live-record");
  ASSERT_FALSE(dir.empty());
  ASSERT_TRUE(WriteLiveRecord(dir, Sample()).ok());
  struct stat st;
  ASSERT_EQ(::stat((dir + "/live.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(wb::testing::Entries(dir), std::vector<std::string>{"live.json"});  // no temp file left
  auto back = ReadLiveRecord(dir);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->id, Sample().id);
  ASSERT_TRUE(WriteFile(dir + "/live.json", "garbage").ok());
  auto bad = ReadLiveRecord(dir);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().ToString().find(dir + "/live.json"), std::string::npos);
  (void)RemoveTree(dir);
}

}  // namespace
}  // namespace wb::daemon
