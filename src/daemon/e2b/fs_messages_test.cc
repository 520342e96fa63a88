// envd's filesystem messages in proto3 JSON, and the small pure helpers of
// filesystem.cc and files.cc.
#include "daemon/e2b/fs_messages.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "daemon/e2b/filesystem_internal.h"
#include "tests/assert_ok.h"

namespace wb::daemon::e2b {
namespace {

using nlohmann::json;

TEST(FsMessagesTest, RequestsTakeBothNamesButNotTogether) {
  auto r = ParseFsRequest(
      R"({"path":"/a","depth":"2","recursive":true,"include_entry":true,"watcherId":"w1",)"
      R"("allowNetworkMounts":false,"unknown":{"x":1}})");
  ASSERT_OK(r);
  EXPECT_EQ(r->path, "/a");
  EXPECT_EQ(r->depth, 2u);
  EXPECT_TRUE(r->recursive);
  EXPECT_TRUE(r->include_entry);
  EXPECT_EQ(r->watcher_id, "w1");
  auto mv = ParseFsRequest(R"({"source":"a","destination":"/b","depth":3})");
  ASSERT_OK(mv);
  EXPECT_EQ(mv->source, "a");
  EXPECT_EQ(mv->destination, "/b");
  EXPECT_EQ(mv->depth, 3u);
  auto empty = ParseFsRequest("");
  ASSERT_OK(empty);
  EXPECT_EQ(empty->depth, 0u);
  struct Case {
    const char* body;
    const char* want;
  };
  for (const Case& c : std::initializer_list<Case>{
           {"{", "(body): not valid JSON"},
           {"[]", "(body): expected a JSON object"},
           {R"({"path":1})", "(path): expected a string"},
           {R"({"depth":-1})", "(depth)"},
           {R"({"depth":"x"})", "(depth)"},
           {R"({"depth":4294967296})", "(depth): out of range"},
           {R"({"recursive":"yes"})", "(recursive)"},
           {R"({"includeEntry":true,"include_entry":true})", "not both"},
       }) {
    SCOPED_TRACE(c.body);
    auto e = ParseFsRequest(c.body);
    ASSERT_FALSE(e.ok());
    EXPECT_EQ(e.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(e.error().ToString().find(c.want), std::string::npos) << e.error().ToString();
  }
}

TEST(FsMessagesTest, EntryInfoIsProto3Json) {
  proto::FileStat st;
  st.name = "a.txt";
  st.path = "/home/user/a.txt";
  st.type = "file";
  st.size = 5;
  st.mode = 04755;
  st.permissions = "-rwsr-xr-x";
  st.owner = "user";
  st.group = "user";
  st.mtime_ns = 1704164645123000000;  // 2024-01-02T03:04:05.123Z
  auto j = json::parse(EntryInfoJson(st));
  EXPECT_EQ(j["name"], "a.txt");
  EXPECT_EQ(j["type"], "FILE_TYPE_FILE");
  EXPECT_EQ(j["path"], "/home/user/a.txt");
  EXPECT_EQ(j["size"], "5");
  EXPECT_EQ(j["mode"], 0755);
  EXPECT_EQ(j["permissions"], "-rwsr-xr-x");
  EXPECT_EQ(j["owner"], "user");
  EXPECT_EQ(j["modifiedTime"], "2024-01-02T03:04:05.123Z");
  EXPECT_FALSE(j.contains("symlinkTarget"));
  EXPECT_FALSE(j.contains("metadata"));
  st.type = "symlink";
  st.symlink_target = "/x";
  j = json::parse(EntryInfoJson(st));
  EXPECT_EQ(j["type"], "FILE_TYPE_SYMLINK");
  EXPECT_EQ(j["symlinkTarget"], "/x");
  st.type = "dir";
  EXPECT_EQ(json::parse(EntryMessageJson(st))["entry"]["type"], "FILE_TYPE_DIRECTORY");
  st.type = "other";  // a fifo: no type (the SDK skips it)
  EXPECT_FALSE(json::parse(EntryInfoJson(st)).contains("type"));
  auto list = json::parse(EntriesMessageJson({st, st}));
  EXPECT_EQ(list["entries"].size(), 2u);
  EXPECT_EQ(json::parse(EntriesMessageJson({}))["entries"], json::array());
}

TEST(FsMessagesTest, Timestamps) {
  EXPECT_EQ(Rfc3339(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(Rfc3339(1704164645000000000), "2024-01-02T03:04:05Z");
  EXPECT_EQ(Rfc3339(1704164645000001000), "2024-01-02T03:04:05.000001Z");
  EXPECT_EQ(Rfc3339(1704164645000000001), "2024-01-02T03:04:05.000000001Z");
  EXPECT_EQ(Rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
}

TEST(FsMessagesTest, EventsAreRelativeToTheWatchedDir) {
  EXPECT_EQ(RelativeName("/a/b", "/a/b/c.txt"), "c.txt");
  EXPECT_EQ(RelativeName("/a/b/", "/a/b//c/d"), "c/d");
  EXPECT_EQ(RelativeName("/a/b", "/a/b"), ".");
  EXPECT_EQ(RelativeName("/", "/x"), "x");
  EXPECT_EQ(RelativeName("/a/b", "/a/bc"), "/a/bc");
  EXPECT_STREQ(EventTypeName("create"), "EVENT_TYPE_CREATE");
  EXPECT_STREQ(EventTypeName("write"), "EVENT_TYPE_WRITE");
  EXPECT_STREQ(EventTypeName("remove"), "EVENT_TYPE_REMOVE");
  EXPECT_STREQ(EventTypeName("rename"), "EVENT_TYPE_RENAME");
  EXPECT_STREQ(EventTypeName("chmod"), "EVENT_TYPE_CHMOD");
  EXPECT_EQ(EventTypeName("explode"), nullptr);
  auto ev = json::parse(WatchEventMessageJson(FilesystemEventJson("x", "EVENT_TYPE_WRITE", {})));
  EXPECT_EQ(ev["filesystem"]["name"], "x");
  EXPECT_EQ(ev["filesystem"]["type"], "EVENT_TYPE_WRITE");
  EXPECT_FALSE(ev["filesystem"].contains("entry"));
  EXPECT_EQ(json::parse(kWatchStartJson), json::parse(R"({"start":{}})"));
  EXPECT_EQ(json::parse(WatcherIdJson("wab")), json::parse(R"({"watcherId":"wab"})"));
}

TEST(FsMessagesTest, ErrorsAsEnvdHasThem) {
  Error unknown_user = Fail(ErrorCode::kInvalidArgument, "write", "",
                            "resolve user(bob): no such user in /etc/passwd");
  EXPECT_EQ(FsConnectCode(unknown_user), "unauthenticated");
  EXPECT_EQ(EnvdHttpStatus(unknown_user), 401u);
  EXPECT_EQ(FsConnectCode(Fail(ErrorCode::kNotFound, "stat", "/x", "")), "not_found");
  EXPECT_EQ(EnvdHttpStatus(Fail(ErrorCode::kNotFound, "", "", "")), 404u);
  EXPECT_EQ(EnvdHttpStatus(Fail(ErrorCode::kInvalidArgument, "", "", "")), 400u);
  EXPECT_EQ(EnvdHttpStatus(Fail(ErrorCode::kFailedPrecondition, "", "", "")), 400u);
  EXPECT_EQ(EnvdHttpStatus(Fail(ErrorCode::kPermissionDenied, "", "", "")), 403u);
  EXPECT_EQ(EnvdHttpStatus(Fail(ErrorCode::kResourceExhausted, "", "", "")), 507u);
  EXPECT_EQ(EnvdHttpStatus(Fail(ErrorCode::kUnavailable, "", "", "")), 502u);
  EXPECT_EQ(EnvdHttpStatus(Fail(ErrorCode::kInternal, "", "", "")), 500u);
  auto body = json::parse(EnvdHttpErrorJson(404, "path '/x' does not exist"));
  EXPECT_EQ(body["code"], 404);
  EXPECT_EQ(body["message"], "path '/x' does not exist");
}

TEST(FsMessagesTest, UploadsEnvsAndHeaders) {
  auto up = json::parse(UploadResultJson({{"a.txt", "/home/user/a.txt"}, {"b", "/b"}}));
  ASSERT_EQ(up.size(), 2u);
  EXPECT_EQ(up[0], json::parse(R"({"name":"a.txt","type":"file","path":"/home/user/a.txt"})"));
  EXPECT_EQ(BaseName("/a/b.txt"), "b.txt");
  EXPECT_EQ(BaseName("/a/dir/"), "dir");
  EXPECT_EQ(BaseName("/"), "/");
  auto envs = json::parse(EnvsJson({"A=1", "B=x=y", "A=2", "NOEQ", "=bad"}));
  EXPECT_EQ(envs, json::parse(R"({"A":"2","B":"x=y"})"));
  EXPECT_EQ(EnvsJson({}), "{}");

  auto h = ParseStreamHeaders("60000", "50");
  ASSERT_OK(h);
  EXPECT_EQ(h->timeout->count(), 60000);
  EXPECT_EQ(h->keepalive, std::chrono::seconds(50));
  auto none = ParseStreamHeaders(std::nullopt, std::nullopt);
  ASSERT_OK(none);
  EXPECT_FALSE(none->timeout);
  EXPECT_EQ(none->keepalive, std::chrono::seconds(90));
  EXPECT_FALSE(ParseStreamHeaders("soon", std::nullopt).ok());
  EXPECT_FALSE(ParseStreamHeaders("12345678901", std::nullopt).ok());
  auto zero = ParseStreamHeaders(std::nullopt, "0");
  ASSERT_FALSE(zero.ok());
  EXPECT_NE(zero.error().ToString().find("Keepalive-Ping-Interval"), std::string::npos);
}

}  // namespace
}  // namespace wb::daemon::e2b
