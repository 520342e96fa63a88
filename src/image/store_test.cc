// The image store: default image, import-dir with ownership shifted into the
// sandbox range. Needs root (chown).
#include "image/store.h"

#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <functional>

#include "base/fs.h"
#include "tests/assert_ok.h"
#include "tests/test_util.h"
#include "tests/uid_ranges.h"

namespace wb {
namespace {

constexpr uint32_t kBase = wb::testing::UidBase(wb::testing::UidUser::kImageTest);

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (chown into the sandbox uid range)";
    state_ = wb::testing::MakeTempDir("wb-store-test");
    src_ = wb::testing::MakeTempDir("wb-store-src");
    ASSERT_FALSE(state_.empty());
    ASSERT_FALSE(src_.empty());
  }
  void TearDown() override {
    if (!state_.empty()) (void)RemoveTree(state_);
    if (!src_.empty()) (void)RemoveTree(src_);
  }
  std::string state_, src_;
};

struct stat Lstat(const std::string& p) {
  struct stat st {};
  EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p;
  return st;
}

TEST_F(StoreTest, DefaultImageIsBuiltOnFirstUse) {
  if (!PathExists("/bin/busybox")) GTEST_SKIP() << "/bin/busybox missing (run scripts/setup)";
  ImageStore store(state_, kBase);
  auto list = store.List();
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
  auto img = store.Get("busybox");
  ASSERT_OK(img);
  ASSERT_EQ(img->lower_dirs.size(), 1u);
  const std::string& root = img->lower_dirs[0];
  EXPECT_TRUE(S_ISLNK(Lstat(root + "/bin/sh").st_mode));
  EXPECT_EQ(Lstat(root + "/bin/busybox").st_uid, kBase);
  EXPECT_EQ(Lstat(root + "/etc/passwd").st_uid, kBase);
  EXPECT_EQ(Lstat(root + "/home/user").st_uid, kBase + 1000);
  EXPECT_EQ(Lstat(root + "/tmp").st_mode & 07777, 01777u);
  EXPECT_NE(ReadFile(root + "/etc/passwd").value().find("root:x:0:0:"), std::string::npos);
  EXPECT_NE(ReadFile(root + "/etc/group").value().find("root:x:0:"), std::string::npos);
  list = store.List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].name, "busybox");
  // A second Get reuses it.
  auto again = store.Get("busybox");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->created, img->created);
}

TEST_F(StoreTest, ImportDirShiftsOwnersAndKeepsLinks) {
  ASSERT_TRUE(MkdirAll(src_ + "/bin").ok());
  ASSERT_TRUE(MkdirAll(src_ + "/home/alice").ok());
  { std::ofstream(src_ + "/bin/tool") << "#!/bin/sh\necho tool\n"; }
  ASSERT_EQ(::chmod((src_ + "/bin/tool").c_str(), 0755), 0);
  ASSERT_EQ(::link((src_ + "/bin/tool").c_str(), (src_ + "/bin/tool2").c_str()), 0);
  ASSERT_EQ(::symlink("/bin/tool", (src_ + "/bin/link").c_str()), 0);
  ASSERT_EQ(::chown((src_ + "/home/alice").c_str(), 1001, 1002), 0);
  ASSERT_EQ(::mkfifo((src_ + "/fifo").c_str(), 0600), 0);

  ImageStore store(state_, kBase);
  auto img = store.ImportDir("team/tool:1.0", src_);
  ASSERT_OK(img);
  const std::string root = img->lower_dirs[0];
  auto tool = Lstat(root + "/bin/tool");
  EXPECT_EQ(tool.st_uid, kBase);
  EXPECT_EQ(tool.st_mode & 0777, 0755u);
  EXPECT_EQ(Lstat(root + "/bin/tool2").st_ino, tool.st_ino) << "hard link kept";
  EXPECT_EQ(ReadFile(root + "/bin/tool").value(), "#!/bin/sh\necho tool\n");
  auto link = Lstat(root + "/bin/link");
  EXPECT_TRUE(S_ISLNK(link.st_mode));
  EXPECT_EQ(link.st_uid, kBase);
  auto alice = Lstat(root + "/home/alice");
  EXPECT_EQ(alice.st_uid, kBase + 1001);
  EXPECT_EQ(alice.st_gid, kBase + 1002);
  EXPECT_FALSE(PathExists(root + "/fifo")) << "fifos are skipped";

  auto got = store.Get("team/tool:1.0");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->source, "dir:" + src_);
  // Importing the same name again is refused.
  auto dup = store.ImportDir("team/tool:1.0", src_);
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.error().ToString().find("exists"), std::string::npos);
}

// What a host user (uid 65534, in a child) can do to a path: 0 or the errno.
int AsNobody(const std::function<int()>& op) {
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
        ::setresuid(65534, 65534, 65534) != 0) {
      ::_exit(255);
    }
    ::_exit(op());
  }
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

// Issue 19, finding 1: a set-uid file of an image ran from the store made a
// host user a sandbox uid, and an image's /tmp was world-writable on the
// host. The dirs holding image trees are root:<base> 0710.
TEST_F(StoreTest, HostUsersCannotReachImageTrees) {
  ASSERT_TRUE(MkdirAll(src_ + "/bin").ok());
  ASSERT_TRUE(MkdirAll(src_ + "/tmp").ok());
  ASSERT_EQ(::chmod((src_ + "/tmp").c_str(), 01777), 0);
  { std::ofstream(src_ + "/bin/suid") << "#!/bin/sh\nid -u\n"; }
  ASSERT_EQ(::chmod((src_ + "/bin/suid").c_str(), 04755), 0);
  // The state dir is walkable by everyone, as the sandboxes need; an image's
  // root is 0755, as in real images.
  ASSERT_EQ(::chmod(state_.c_str(), 0711), 0);
  ASSERT_EQ(::chmod(src_.c_str(), 0755), 0);
  ImageStore store(state_, kBase);
  ASSERT_OK_AND_ASSIGN(Image img, store.ImportDir("suid:1", src_));
  const std::string root = img.lower_dirs[0];
  ASSERT_EQ(Lstat(root + "/bin/suid").st_mode & 07777, 04755u);  // kept for the sandbox
  const std::string dir = root.substr(0, root.size() - std::string("/rootfs").size());
  auto st = Lstat(dir);
  EXPECT_EQ(st.st_mode & 07777, 0710u) << dir;
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_gid, kBase);
  const std::string suid = root + "/bin/suid", tmp = root + "/tmp/planted";
  auto attack = [&] {
    return AsNobody([&] {
      if (::access(suid.c_str(), X_OK) == 0) return 1;  // could run it
      int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
      if (fd >= 0) return 2;  // could plant a file in the image
      return errno == EACCES ? 0 : 3;
    });
  };
  EXPECT_EQ(attack(), 0);
  // A store written by an older warmbox (0755) is closed when the image is used.
  ASSERT_EQ(::chmod(dir.c_str(), 0755), 0);
  EXPECT_EQ(attack(), 1) << "the test must reproduce the attack on an open store";
  ASSERT_OK(store.Get("suid:1"));
  EXPECT_EQ(Lstat(dir).st_mode & 07777, 0710u);
  EXPECT_EQ(attack(), 0);
  EXPECT_FALSE(PathExists(tmp));
}

TEST_F(StoreTest, BadInputIsRefusedWithoutLeftovers) {
  ImageStore store(state_, kBase);
  for (const char* bad : {"", "a b", "../x", "x;rm", ".", "--help", "-x"}) {
    auto r = store.ImportDir(bad, src_);
    EXPECT_FALSE(r.ok()) << bad;
  }
  auto missing = store.ImportDir("ok", "/no/such/dir");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().ToString().find("/no/such/dir"), std::string::npos);
  { std::ofstream(src_ + "/file") << "x"; }
  auto notdir = store.ImportDir("ok", src_ + "/file");
  ASSERT_FALSE(notdir.ok());
  EXPECT_NE(notdir.error().ToString().find("not a directory"), std::string::npos);
  // Owners outside the 65536 ids cannot be mapped.
  ASSERT_TRUE(MkdirAll(src_ + "/d").ok());
  ASSERT_EQ(::chown((src_ + "/d").c_str(), 70000, 0), 0);
  auto wide = store.ImportDir("wide", src_);
  ASSERT_FALSE(wide.ok());
  EXPECT_NE(wide.error().ToString().find("70000"), std::string::npos);
  // Nothing half-made is left behind.
  EXPECT_TRUE(wb::testing::DirsBelow(state_ + "/images").empty());
  auto unknown = store.Get("nope");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.error().ToString().find("no such image"), std::string::npos);
}

TEST_F(StoreTest, UidBaseMismatchIsExplained) {
  ASSERT_TRUE(MkdirAll(src_ + "/bin").ok());
  ImageStore a(state_, kBase);
  ASSERT_TRUE(a.ImportDir("img", src_).ok());
  ImageStore b(state_, kBase + 65536);
  auto r = b.Get("img");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().ToString().find("--userns-base"), std::string::npos);
}

// An OCI image's index entry: layers resolve to the shared layer dirs, top
// first; short names resolve to canonical ones; rm and prune keep what other
// images use.
TEST_F(StoreTest, OciImagesResolveShareAndPrune) {
  ImageStore store(state_, kBase);
  ASSERT_TRUE(store.PrepareOciDirs().ok());
  auto digest = [](char c) { return "sha256:" + std::string(64, c); };
  for (char c : {'a', 'b', 'c', 'd', 'e'}) {
    ASSERT_TRUE(MkdirAll(store.LayerDir(digest(c))).ok());
    std::ofstream(store.BlobPath(digest(c))) << c;
  }
  Image one;
  one.name = "docker.io/library/python:3.12-slim";
  one.layer_digests = {digest('a'), digest('b')};
  one.blobs = {digest('a'), digest('b'), digest('d')};
  one.config.cmd = {"python3"};
  one.config.entrypoint = {"/init"};
  auto c1 = store.CommitOci(one);
  ASSERT_OK(c1);
  ASSERT_EQ(c1->lower_dirs.size(), 2u);
  EXPECT_EQ(c1->lower_dirs[0], store.LayerDir(digest('b')));  // top first
  EXPECT_EQ(c1->lower_dirs[1], store.LayerDir(digest('a')));
  EXPECT_EQ(c1->config.cmd, std::vector<std::string>{"python3"});
  EXPECT_EQ(c1->config.entrypoint, std::vector<std::string>{"/init"});
  EXPECT_EQ(store.Resolve("python:3.12-slim"), one.name);
  EXPECT_TRUE(store.Exists("python:3.12-slim"));
  EXPECT_FALSE(store.Exists("python:3.13"));
  ASSERT_TRUE(store.Get("python:3.12-slim").ok());
  Image two = one;
  two.name = "localhost:5000/team/img:v1";
  two.layer_digests = {digest('a'), digest('c')};
  two.blobs = {digest('a'), digest('c')};
  ASSERT_TRUE(store.CommitOci(two).ok());
  // Committing a name again replaces the entry.
  two.config.cmd = {"sh"};
  auto replaced = store.CommitOci(two);
  ASSERT_TRUE(replaced.ok());
  EXPECT_EQ(store.Get("localhost:5000/team/img:v1").value().config.cmd,
            std::vector<std::string>{"sh"});
  EXPECT_EQ(store.List().value().size(), 2u);

  ASSERT_TRUE(store.Remove("python:3.12-slim").ok());
  EXPECT_FALSE(store.Remove("python:3.12-slim").ok());
  { std::ofstream(store.TmpDir() + "/blob-leftover") << "x"; }
  auto rep = store.Prune();
  ASSERT_OK(rep);
  EXPECT_EQ(rep->blobs, 3u);   // b, d, e
  EXPECT_EQ(rep->layers, 3u);  // b, d, e
  EXPECT_EQ(rep->tmp, 1u);
  EXPECT_TRUE(PathExists(store.LayerDir(digest('a'))));
  EXPECT_TRUE(PathExists(store.LayerDir(digest('c'))));
  EXPECT_FALSE(PathExists(store.LayerDir(digest('b'))));
  EXPECT_TRUE(PathExists(store.BlobPath(digest('a'))));
  EXPECT_FALSE(PathExists(store.BlobPath(digest('d'))));
  // The import-dir namespace is untouched by resolution: exact names first.
  ASSERT_TRUE(MkdirAll(src_ + "/bin").ok());
  ASSERT_TRUE(store.ImportDir("python:3.12-slim", src_).ok());
  EXPECT_EQ(store.Resolve("python:3.12-slim"), "python:3.12-slim");
  EXPECT_EQ(store.Resolve("busybox"), "busybox");
}

// What a sandbox dir records (STATE/sandboxes/<id>/lowers) is never deleted
// by rm or prune: it waits in trash/ until no sandbox dir names it.
TEST_F(StoreTest, RemovedDirsThatASandboxMountsWaitInTrash) {
  ImageStore store(state_, kBase);
  ASSERT_TRUE(store.PrepareOciDirs().ok());
  ASSERT_TRUE(MkdirAll(src_ + "/bin").ok());
  { std::ofstream(src_ + "/bin/tool") << "#!/bin/sh\n"; }
  auto tree = store.ImportDir("tree", src_);
  ASSERT_OK(tree);
  const std::string layer = "sha256:" + std::string(64, 'f');
  ASSERT_TRUE(MkdirAll(store.LayerDir(layer) + "/usr").ok());
  Image oci;
  oci.name = "localhost:5000/layered:v1";
  oci.layer_digests = {layer};
  auto layered = store.CommitOci(oci);
  ASSERT_OK(layered);
  const std::string sb = state_ + "/sandboxes/s1";
  ASSERT_TRUE(MkdirAll(sb).ok());
  ASSERT_OK(RecordLowerDirs(sb, *tree));
  ASSERT_TRUE(MkdirAll(state_ + "/sandboxes/s2").ok());
  ASSERT_OK(RecordLowerDirs(state_ + "/sandboxes/s2", *layered));

  auto rm = store.Remove("tree");
  ASSERT_OK(rm);
  EXPECT_FALSE(*rm);
  ASSERT_OK(store.Remove("localhost:5000/layered:v1"));
  auto rep = store.Prune();
  ASSERT_OK(rep);
  EXPECT_EQ(rep->layers, 1u);
  EXPECT_EQ(rep->in_use, 2u);                       // the tree and the layer
  EXPECT_FALSE(PathExists(store.LayerDir(layer)));  // out of layers/ (in trash/)
  // A sandbox made now of what was removed is refused, naming the dir.
  auto late = RecordLowerDirs(state_ + "/sandboxes/s1", *tree);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().code, ErrorCode::kNotFound);
  // The sandboxes end: the next prune (or rm, or gc) deletes what they held.
  ASSERT_TRUE(RemoveTree(sb).ok());
  rep = store.Prune();
  ASSERT_OK(rep);
  EXPECT_EQ(rep->in_use, 1u);
  ASSERT_TRUE(RemoveTree(state_ + "/sandboxes/s2").ok());
  auto kept = store.EmptyTrash();
  ASSERT_OK(kept);
  EXPECT_EQ(*kept, 0u);
  EXPECT_EQ(::rmdir(store.TrashDir().c_str()), 0) << "trash/ is not empty";
}

}  // namespace
}  // namespace wb
