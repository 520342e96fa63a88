// File operations and watches of live sandboxes (docs/protocol.md, "Files"),
// against warmbox-agent run as a plain process: paths are the host's here.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <set>
#include <string>
#include <vector>

#include "agent/live_test_util.h"
#include "base/strings.h"
#include "tests/assert_ok.h"

namespace wb::live_test {
namespace {

using proto::FileRequest;
using proto::FileStat;

class LiveFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(agent_.Start());
    root_ = agent_.dir() + "/files";
    ASSERT_EQ(::mkdir(root_.c_str(), 0755), 0);
  }

  // The requesting user: root ("") when the test (and so the agent) is
  // root, else the agent's own uid:gid (it cannot switch to another).
  static std::string Me() {
    if (::geteuid() == 0) return "";
    return std::to_string(::geteuid()) + ":" + std::to_string(::getegid());
  }
  FileRequest Req(const std::string& op, const std::string& path) {
    FileRequest r;
    r.op = op;
    r.path = path;
    r.user = Me();
    return r;
  }
  // One request; the answer frame.
  Frame Do(const FileRequest& r) {
    Wire w(agent_.sock());
    w.Send(FrameType::kFile, proto::ToJson(r));
    auto f = w.Next();
    return f ? *f : Frame{FrameType::kFailure, "no answer"};
  }
  static std::string Code(const Frame& f) {
    if (f.type != FrameType::kOpError) return std::string("frame ") + static_cast<char>(f.type);
    return proto::ParseOpError(f.payload)->code;
  }
  void Touch(const std::string& path, const std::string& data = "") {
    ASSERT_OK(WriteFileAtomic(path, data, 0644));
  }
  // Writes data as chunks of I, then C; the final answer.
  Frame Upload(FileRequest r, const std::string& data) {
    Wire w(agent_.sock());
    w.Send(FrameType::kFile, proto::ToJson(r));
    for (size_t off = 0; off < data.size(); off += 65536) {
      w.Send(FrameType::kStdin, std::string_view(data).substr(off, 65536));
    }
    w.Send(FrameType::kStdinClose);
    auto f = w.Next();
    return f ? *f : Frame{FrameType::kFailure, "no answer"};
  }

  TestAgent agent_;
  std::string root_;
};

std::string MyName() {
  passwd* pw = ::getpwuid(::geteuid());
  return pw ? pw->pw_name : std::to_string(::geteuid());
}

TEST_F(LiveFilesTest, StatReportsTypePermissionsAndOwner) {
  std::string f = root_ + "/a.txt";
  Touch(f, "hello");
  ASSERT_EQ(::chmod(f.c_str(), 04751), 0);
  Frame r = Do(Req("stat", f));
  ASSERT_EQ(r.type, FrameType::kFileReply) << r.payload;
  auto st = proto::ParseFileStat(r.payload);
  ASSERT_OK(st);
  EXPECT_EQ(st->name, "a.txt");
  EXPECT_EQ(st->path, f);
  EXPECT_EQ(st->type, "file");
  EXPECT_EQ(st->size, 5u);
  EXPECT_EQ(st->mode, 04751u);
  EXPECT_EQ(st->permissions, "-rwsr-x--x");
  EXPECT_EQ(st->uid, ::geteuid());
  EXPECT_EQ(st->owner, MyName());
  EXPECT_GT(st->mtime_ns, 1700000000000000000);

  ASSERT_EQ(::symlink("a.txt", (root_ + "/link").c_str()), 0);
  st = proto::ParseFileStat(Do(Req("stat", root_ + "/link")).payload);
  ASSERT_OK(st);
  EXPECT_EQ(st->type, "symlink");
  EXPECT_EQ(st->symlink_target, "a.txt");
  EXPECT_EQ(st->permissions[0], 'l');

  st = proto::ParseFileStat(Do(Req("stat", root_)).payload);
  ASSERT_OK(st);
  EXPECT_EQ(st->type, "dir");
  EXPECT_EQ(st->permissions, "drwxr-xr-x");

  EXPECT_EQ(Code(Do(Req("stat", root_ + "/missing"))), "not_found");
  EXPECT_EQ(Code(Do(Req("stat", "relative"))), "bad_request");
}

TEST_F(LiveFilesTest, ListToDepthTwo) {
  ASSERT_OK(MkdirAll(root_ + "/d/sub/deeper"));
  Touch(root_ + "/d/a");
  Touch(root_ + "/d/sub/b");
  Touch(root_ + "/d/sub/deeper/c");
  FileRequest r = Req("list", root_ + "/d");
  r.depth = 2;
  Frame f = Do(r);
  ASSERT_EQ(f.type, FrameType::kFileReply) << f.payload;
  auto l = proto::ParseFileEntries(f.payload);
  ASSERT_OK(l);
  std::vector<std::string> paths;
  for (const auto& e : *l) paths.push_back(e.path.substr(root_.size()));
  EXPECT_EQ(paths, (std::vector<std::string>{"/d/a", "/d/sub", "/d/sub/b", "/d/sub/deeper"}));
  r.depth = 1;
  l = proto::ParseFileEntries(Do(r).payload);
  ASSERT_OK(l);
  EXPECT_EQ(l->size(), 2u);
}

TEST_F(LiveFilesTest, MkdirMakesParentsAndAcceptsAnExistingDir) {
  FileRequest r = Req("mkdir", root_ + "/x/y/z");
  r.mode = 0700;
  Frame f = Do(r);
  ASSERT_EQ(f.type, FrameType::kFileReply) << f.payload;
  auto st = proto::ParseFileStat(f.payload);
  ASSERT_OK(st);
  EXPECT_EQ(st->type, "dir");
  EXPECT_EQ(st->mode, 0700u);
  EXPECT_EQ(st->created, std::optional<bool>(true));
  st = proto::ParseFileStat(Do(r).payload);
  ASSERT_OK(st);
  EXPECT_EQ(st->created, std::optional<bool>(false));
  Touch(root_ + "/file");
  EXPECT_EQ(Code(Do(Req("mkdir", root_ + "/file"))), "already_exists");
}

TEST_F(LiveFilesTest, RemoveAndRename) {
  ASSERT_OK(MkdirAll(root_ + "/full/inner"));
  Touch(root_ + "/full/inner/f");
  EXPECT_EQ(Code(Do(Req("remove", root_ + "/full"))), "failed_precondition");
  EXPECT_TRUE(PathExists(root_ + "/full/inner/f"));
  FileRequest r = Req("remove", root_ + "/full");
  r.recursive = true;
  Frame f = Do(r);
  EXPECT_EQ(f.type, FrameType::kFileReply) << f.payload;
  EXPECT_EQ(f.payload, "{}");
  EXPECT_FALSE(PathExists(root_ + "/full"));
  EXPECT_EQ(Code(Do(Req("remove", root_ + "/full"))), "not_found");

  Touch(root_ + "/old", "abc");
  FileRequest mv = Req("rename", root_ + "/old");
  mv.to = root_ + "/new";
  f = Do(mv);
  ASSERT_EQ(f.type, FrameType::kFileReply) << f.payload;
  auto st = proto::ParseFileStat(f.payload);
  ASSERT_OK(st);
  EXPECT_EQ(st->path, root_ + "/new");
  EXPECT_EQ(st->size, 3u);
  EXPECT_FALSE(PathExists(root_ + "/old"));
}

uint64_t VmHwmKb(pid_t pid) {
  auto s = ReadFile("/proc/" + std::to_string(pid) + "/status");
  if (!s.ok()) return 0;
  for (const auto& line : Split(*s, '\n')) {
    if (line.rfind("VmHWM:", 0) == 0) {
      auto v = ParseUint(Trim(Trim(line.substr(6)).substr(0, Trim(line.substr(6)).find(' '))), "");
      return v.ok() ? *v : 0;
    }
  }
  return 0;
}

// A recognisable 64 KiB chunk i (so a misplaced chunk shows).
std::string Chunk(size_t i) {
  std::string c(65536, '\0');
  for (size_t j = 0; j < c.size(); ++j) c[j] = static_cast<char>((i * 131 + j * 7) & 0xff);
  return c;
}

TEST_F(LiveFilesTest, HundredMebibytesWrittenAndReadBackInBoundedMemory) {
  constexpr size_t kChunks = 1600;  // 100 MiB
  const uint64_t hwm_before = VmHwmKb(agent_.pid());
  ASSERT_GT(hwm_before, 0u);
  std::string path = root_ + "/big/file.bin";  // the parent is made
  {
    Wire w(agent_.sock());
    FileRequest r = Req("write", path);
    w.Send(FrameType::kFile, proto::ToJson(r));
    for (size_t i = 0; i < kChunks; ++i) w.Send(FrameType::kStdin, Chunk(i));
    w.Send(FrameType::kStdinClose);
    auto st = w.Expect(FrameType::kFileReply, 60000);
    ASSERT_TRUE(st) << w.last_unexpected();
    EXPECT_EQ(proto::ParseFileStat(*st)->size, kChunks * 65536);
  }
  {
    Wire w(agent_.sock());
    w.Send(FrameType::kFile, proto::ToJson(Req("read", path)));
    auto st = w.Expect(FrameType::kFileReply);
    ASSERT_TRUE(st) << w.last_unexpected();
    EXPECT_EQ(proto::ParseFileStat(*st)->size, kChunks * 65536);
    std::string pending;
    size_t next = 0;
    for (;;) {
      auto f = w.Next(60000);
      ASSERT_TRUE(f);
      if (f->type == FrameType::kFileEnd) {
        EXPECT_EQ(proto::ParseFileEnd(f->payload)->size, kChunks * 65536);
        break;
      }
      ASSERT_EQ(f->type, FrameType::kStdout);
      EXPECT_LE(f->payload.size(), 65536u);
      pending += f->payload;
      while (pending.size() >= 65536) {
        ASSERT_EQ(pending.substr(0, 65536), Chunk(next)) << "chunk " << next;
        pending.erase(0, 65536);
        ++next;
      }
    }
    EXPECT_EQ(next, kChunks);
    EXPECT_TRUE(pending.empty());
  }
  const uint64_t hwm_after = VmHwmKb(agent_.pid());
  // Loosely: the agent streamed, it did not hold the file (100 MiB).
  EXPECT_LT(hwm_after - hwm_before, 32u * 1024) << hwm_before << " kB -> " << hwm_after << " kB";
}

TEST_F(LiveFilesTest, WriteOverMaxBytesIsRefusedAndLeavesNothing) {
  FileRequest r = Req("write", root_ + "/capped");
  r.max_bytes = 100000;
  Frame f = Upload(r, std::string(100001, 'x'));
  EXPECT_EQ(Code(f), "resource_exhausted") << f.payload;
  EXPECT_FALSE(PathExists(root_ + "/capped"));
  f = Upload(r, std::string(100000, 'x'));
  ASSERT_EQ(f.type, FrameType::kFileReply) << f.payload;
  EXPECT_EQ(proto::ParseFileStat(f.payload)->size, 100000u);
  EXPECT_EQ(proto::ParseFileStat(f.payload)->mode, 0644u);
  r.append = true;
  r.max_bytes = 0;
  f = Upload(r, "tail");
  ASSERT_EQ(f.type, FrameType::kFileReply) << f.payload;
  EXPECT_EQ(proto::ParseFileStat(f.payload)->size, 100004u);
}

TEST_F(LiveFilesTest, UploadCutShortByHangUpLeavesNothing) {
  std::string path = root_ + "/partial";
  {
    Wire w(agent_.sock());
    w.Send(FrameType::kFile, proto::ToJson(Req("write", path)));
    w.Send(FrameType::kStdin, "some bytes");
    // A heartbeat's answer: the frames before it were handled.
    w.Send(FrameType::kHeartbeat);
    ASSERT_TRUE(w.Expect(FrameType::kHeartbeatReply)) << w.last_unexpected();
    ASSERT_TRUE(PathExists(path));
  }  // no C
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (PathExists(path) && std::chrono::steady_clock::now() < deadline) {
  }
  EXPECT_FALSE(PathExists(path));
}

TEST_F(LiveFilesTest, ReadOfMissingOrDirectoryFails) {
  EXPECT_EQ(Code(Do(Req("read", root_ + "/none"))), "not_found");
  EXPECT_EQ(Code(Do(Req("read", root_))), "failed_precondition");
}

// Collects V events on w until every (type, path) of want was seen.
bool SawAll(Wire& w, std::set<std::pair<std::string, std::string>> want, std::string* log) {
  while (!want.empty()) {
    auto f = w.Next(10000);
    if (!f || f->type != FrameType::kWatchEvents) return false;
    auto ev = proto::ParseWatchEvents(f->payload);
    if (!ev.ok()) return false;
    for (const auto& e : *ev) {
      *log += e.type + " " + e.path + "\n";
      want.erase({e.type, e.path});
    }
  }
  return true;
}

TEST_F(LiveFilesTest, WatchSeesCreateWriteRenameRemove) {
  Wire w(agent_.sock());
  w.Send(FrameType::kFile, proto::ToJson(Req("watch", root_)));
  ASSERT_EQ(w.Expect(FrameType::kFileReply).value_or("?"), "{}") << w.last_unexpected();
  std::string a = root_ + "/a", b = root_ + "/b", log;
  UniqueFd fd(::open(a.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  ASSERT_TRUE(fd.valid());
  ASSERT_TRUE(SawAll(w, {{"create", a}}, &log)) << log;
  ASSERT_OK(WriteAll(fd.get(), "data"));
  fd.reset();
  ASSERT_TRUE(SawAll(w, {{"write", a}}, &log)) << log;
  ASSERT_EQ(::chmod(a.c_str(), 0600), 0);
  ASSERT_TRUE(SawAll(w, {{"chmod", a}}, &log)) << log;
  ASSERT_EQ(::rename(a.c_str(), b.c_str()), 0);
  ASSERT_TRUE(SawAll(w, {{"rename", a}, {"create", b}}, &log)) << log;
  ASSERT_EQ(::unlink(b.c_str()), 0);
  ASSERT_TRUE(SawAll(w, {{"remove", b}}, &log)) << log;
}

TEST_F(LiveFilesTest, RecursiveWatchFollowsNewDirectories) {
  ASSERT_OK(MkdirAll(root_ + "/pre/existing"));
  Wire w(agent_.sock());
  FileRequest r = Req("watch", root_);
  r.recursive = true;
  w.Send(FrameType::kFile, proto::ToJson(r));
  ASSERT_EQ(w.Expect(FrameType::kFileReply).value_or("?"), "{}") << w.last_unexpected();
  std::string log;
  Touch(root_ + "/pre/existing/f");  // atomically: a temp file renamed over
  ASSERT_TRUE(SawAll(w, {{"create", root_ + "/pre/existing/f"}}, &log)) << log;
  ASSERT_EQ(::mkdir((root_ + "/new").c_str(), 0755), 0);
  ASSERT_TRUE(SawAll(w, {{"create", root_ + "/new"}}, &log)) << log;
  // Watched once its create event was sent.
  ASSERT_EQ(::mkdir((root_ + "/new/inner").c_str(), 0755), 0);
  ASSERT_TRUE(SawAll(w, {{"create", root_ + "/new/inner"}}, &log)) << log;
}

// --- as another user (root only) ---------------------------------------------------

TEST_F(LiveFilesTest, AsUserFilesAreTheUsersAndPermissionsAreChecked) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root: the agent switches to uid 1000";
  // mkdtemp made the agent's dir 0700: uid 1000 must pass through it.
  ASSERT_EQ(::chmod(agent_.dir().c_str(), 0755), 0);
  std::string open_dir = root_ + "/open";
  ASSERT_EQ(::mkdir(open_dir.c_str(), 0777), 0);
  ASSERT_EQ(::chmod(open_dir.c_str(), 0777), 0);
  FileRequest r = Req("write", open_dir + "/sub/mine");
  r.user = "1000";
  Frame f = Upload(r, "as 1000");
  ASSERT_EQ(f.type, FrameType::kFileReply) << f.payload;
  struct stat st;
  ASSERT_EQ(::stat((open_dir + "/sub/mine").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_gid, 1000u);
  ASSERT_EQ(::stat((open_dir + "/sub").c_str(), &st), 0);  // the parent it made
  EXPECT_EQ(st.st_uid, 1000u);

  std::string secret = root_ + "/secret";
  Touch(secret, "root only");
  ASSERT_EQ(::chmod(secret.c_str(), 0600), 0);
  FileRequest rd = Req("read", secret);
  rd.user = "1000";
  EXPECT_EQ(Code(Do(rd)), "permission_denied");
  FileRequest wr = Req("write", root_ + "/not-writable-by-1000");
  wr.user = "1000";
  EXPECT_EQ(Code(Upload(wr, "x")), "permission_denied");
  // The agent is root again afterwards.
  EXPECT_EQ(Do(Req("read", secret)).type, FrameType::kFileReply);
}

}  // namespace
}  // namespace wb::live_test
