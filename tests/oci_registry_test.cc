// OCI images end to end: a real registry (Debian's docker-registry) on
// 127.0.0.1, images pushed with skopeo from OCI layouts built here, pulled
// with `warmbox image pull` and run; basic auth (htpasswd); the bearer-token
// flow and misbehaving registries (a small server in tests/oci/); imports of
// docker-archive and OCI layouts; hostile layers; layer sharing; concurrent
// pulls; the pool daemon pulling what it needs.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/child.h"
#include "base/fs.h"
#include "base/strings.h"
#include "tests/test_util.h"
#include "tests/uid_ranges.h"

namespace wb {
namespace {

using wb::testing::Eventually;
using wb::testing::ProcResult;
using wb::testing::RunProcess;

constexpr uint32_t kBase = wb::testing::UidBase(wb::testing::UidUser::kOciRegistryTest);
const std::string kScripts = std::string(WB_SOURCE_DIR) + "/tests/oci";

void WriteText(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

int FreePort() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return -1;
  socklen_t len = sizeof a;
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

bool Listening(int port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
}

size_t CountEntries(const std::string& dir) {
  auto r = RunProcess({"/bin/sh", "-c", "ls -A '" + dir + "' 2>/dev/null | wc -l"});
  return std::stoul(std::string(Trim(r.out)).empty() ? "0" : std::string(Trim(r.out)));
}

class OciTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why = wb::testing::SandboxProbe();
    if (!why.empty()) GTEST_SKIP() << why;
    for (const char* tool :
         {"/usr/bin/docker-registry", "/usr/bin/skopeo", "/usr/bin/python3", "/usr/bin/htpasswd"}) {
      if (!PathExists(tool)) GTEST_SKIP() << tool << " missing (run scripts/setup)";
    }
    state_ = wb::testing::MakeTempDir("wb-oci-state");
    work_ = wb::testing::MakeTempDir("wb-oci-work");
    ASSERT_FALSE(state_.empty());
    ASSERT_FALSE(work_.empty());
    // The sandbox range must reach the state dir (mkdtemp makes it 0700).
    ASSERT_EQ(::chmod(state_.c_str(), 0711), 0);
  }
  void TearDown() override {
    for (auto& c : children_) c.KillAndReap();
    if (!state_.empty()) (void)RemoveTree(state_);
    if (!work_.empty()) (void)RemoveTree(work_);
  }

  std::vector<std::string> Env() const {
    return {"WARMBOX_STATE_DIR=" + state_, "WARMBOX_USERNS_BASE=" + std::to_string(kBase),
            "HOME=" + work_};
  }
  ProcResult Wb(std::vector<std::string> args, std::vector<std::string> extra_env = {}) {
    args.insert(args.begin(), wb::testing::BuildDir() + "/warmbox");
    auto env = Env();
    env.insert(env.end(), extra_env.begin(), extra_env.end());
    return RunProcess(args, env);
  }
  ProcResult Py(std::vector<std::string> args) {
    args.insert(args.begin(), "/usr/bin/python3");
    return RunProcess(args);
  }

  // Rootfs trees: base (busybox, /etc/motd, /etc/keep, /opt/app/old.txt),
  // top (whites out /etc/motd, makes /opt/app opaque with new.txt).
  void MakeTrees() {
    const std::string b = work_ + "/base", t = work_ + "/top";
    for (const auto& d :
         {b + "/bin", b + "/etc", b + "/opt/app", b + "/home", t + "/etc", t + "/opt/app"}) {
      ASSERT_TRUE(MkdirAll(d).ok());
    }
    ASSERT_EQ(RunProcess({"/bin/cp", "/bin/busybox", b + "/bin/busybox"}).code, 0);
    for (const char* a : {"sh", "ls", "cat", "id", "stat", "echo", "test", "pwd", "env"}) {
      ASSERT_EQ(::symlink("busybox", (b + "/bin/" + a).c_str()), 0);
    }
    WriteText(b + "/etc/motd", "hello\n");
    WriteText(b + "/etc/keep", "keep\n");
    WriteText(b + "/opt/app/old.txt", "old\n");
    WriteText(b + "/home/owned-1000", "mine\n");
    WriteText(t + "/etc/.wh.motd", "");
    WriteText(t + "/opt/app/.wh..wh..opq", "");
    WriteText(t + "/opt/app/new.txt", "new\n");
  }
  // An OCI layout at work_/NAME holding tag from the given trees.
  std::string Layout(
      const std::string& name, const std::string& tag, const std::vector<std::string>& trees,
      const std::string& config =
          R"({"Cmd":["sh","-c","echo from-cmd $FOO"],"Env":["FOO=bar"],"WorkingDir":"/opt"})",
      const std::vector<std::string>& raw_layers = {}) {
    std::vector<std::string> args = {
        kScripts + "/make_layout.py", work_ + "/" + name, "--tag", tag, "--config", config};
    for (const auto& t : trees) args.insert(args.end(), {"--layer", work_ + "/" + t});
    for (const auto& r : raw_layers) args.insert(args.end(), {"--raw-layer", r});
    auto r = Py(args);
    EXPECT_EQ(r.code, 0) << r.err;
    return work_ + "/" + name;
  }

  // docker-registry on a free port; basic auth (user "tester") when auth.
  int StartRegistry(bool auth = false) {
    int port = FreePort();
    const std::string dir = work_ + "/registry-" + std::to_string(port);
    EXPECT_TRUE(MkdirAll(dir + "/data").ok());
    std::string cfg =
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  "
        "filesystem:\n    rootdirectory: " +
        dir + "/data\nhttp:\n  addr: 127.0.0.1:" + std::to_string(port) + "\n";
    if (auth) {
      auto h = RunProcess({"/usr/bin/htpasswd", "-Bbn", "tester", "s3cret"});
      EXPECT_EQ(h.code, 0);
      WriteText(dir + "/htpasswd", h.out);
      cfg += "auth:\n  htpasswd:\n    realm: warmbox-test\n    path: " + dir + "/htpasswd\n";
    }
    WriteText(dir + "/config.yml", cfg);
    SpawnOptions o;
    o.path = "/usr/bin/docker-registry";
    o.argv = {"docker-registry", "serve", dir + "/config.yml"};
    o.pdeath_signal = SIGKILL;
    auto c = ChildProcess::Spawn(o);
    EXPECT_TRUE(c.ok());
    if (c.ok()) children_.push_back(std::move(*c));
    EXPECT_TRUE(Eventually([&] { return Listening(port); }, 10000)) << "registry did not start";
    return port;
  }
  // tests/oci/fake_registry.py serving layout (bearer-token flow).
  int StartFake(const std::string& layout, std::vector<std::string> extra = {}) {
    const std::string port_file = work_ + "/fake-port-" + std::to_string(children_.size());
    SpawnOptions o;
    o.path = "/usr/bin/python3";
    o.argv = {"python3", kScripts + "/fake_registry.py", layout, "--port-file", port_file};
    o.argv.insert(o.argv.end(), extra.begin(), extra.end());
    o.pdeath_signal = SIGKILL;
    auto c = ChildProcess::Spawn(o);
    EXPECT_TRUE(c.ok());
    if (c.ok()) children_.push_back(std::move(*c));
    EXPECT_TRUE(Eventually([&] { return PathExists(port_file); }, 10000))
        << "fake registry did not start";
    auto text = ReadFile(port_file);
    return text.ok() ? std::stoi(*text) : -1;
  }
  // format "v2s2": converted to a Docker v2 schema 2 manifest on the way.
  void Push(const std::string& layout, const std::string& tag, int port, const std::string& repo,
            const std::string& creds = "", const std::string& format = "") {
    std::vector<std::string> args = {"/usr/bin/skopeo", "copy", "--quiet",
                                     "--dest-tls-verify=false"};
    if (!creds.empty()) args.insert(args.end(), {"--dest-creds", creds});
    if (!format.empty()) args.insert(args.end(), {"--format", format});
    args.push_back("oci:" + layout + ":" + tag);
    args.push_back("docker://127.0.0.1:" + std::to_string(port) + "/" + repo);
    auto r = RunProcess(args, {"HOME=" + work_});
    ASSERT_EQ(r.code, 0) << r.err;
  }
  size_t Blobs() const { return CountEntries(state_ + "/blobs/sha256"); }
  size_t Layers() const { return CountEntries(state_ + "/layers/" + std::to_string(kBase)); }
  size_t Tmp() const { return CountEntries(state_ + "/tmp"); }
  size_t Images() const { return CountEntries(state_ + "/images"); }

  std::string state_, work_;
  std::vector<ChildProcess> children_;
};

// The merged filesystem of a two-layer image with a whiteout and an opaque
// dir, the image config's defaults, and owners as the layer says.
TEST_F(OciTest, PullFromRegistryAndRunMergedFilesystem) {
  MakeTrees();
  std::string layout = Layout("layout", "v1", {"base", "top"});
  int port = StartRegistry();
  Push(layout, "v1", port, "team/img:v1");
  const std::string ref = "127.0.0.1:" + std::to_string(port) + "/team/img:v1";
  auto p = Wb({"image", "pull", ref});
  ASSERT_EQ(p.code, 0) << p.err;
  EXPECT_EQ(p.out, ref + "\n");
  EXPECT_EQ(p.err, "");  // quiet when not on a terminal
  auto r =
      Wb({"run", "--image", ref, "--", "sh", "-c",
          "ls /etc /opt/app; cat /etc/keep /opt/app/new.txt; test -e /etc/motd || echo motd-gone; "
          "test -e /opt/app/old.txt || echo old-gone; echo $FOO $(pwd); stat -c '%u %n' "
          "/home/owned-1000 /bin/busybox"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "/etc:\nkeep\n\n/opt/app:\nnew.txt\nkeep\nnew\nmotd-gone\nold-gone\nbar /opt\n"
            "1000 /home/owned-1000\n0 /bin/busybox\n");
  // No command: the image's Cmd runs, with its Env.
  auto d = Wb({"run", "--image", ref});
  EXPECT_EQ(d.code, 0) << d.err;
  EXPECT_EQ(d.out, "from-cmd bar\n");
  // On the host the files belong to the sandbox's range.
  struct stat st;
  ASSERT_EQ(::stat((state_ + "/layers/" + std::to_string(kBase)).c_str(), &st), 0);
  auto ls = Wb({"image", "ls"});
  EXPECT_NE(ls.out.find(ref), std::string::npos) << ls.out;
  auto in = Wb({"image", "inspect", ref});
  ASSERT_EQ(in.code, 0) << in.err;
  auto j = nlohmann::json::parse(in.out);
  EXPECT_EQ(j["config"]["Cmd"], nlohmann::json({"sh", "-c", "echo from-cmd $FOO"}));
  EXPECT_EQ(j["layers"].size(), 2u);
  ASSERT_EQ(j["lower_dirs"].size(), 2u);
  // Top layer first in the overlay's lower list.
  EXPECT_EQ(j["lower_dirs"][0], state_ + "/layers/" + std::to_string(kBase) + "/" +
                                    j["layers"][1].get<std::string>().substr(7));
  ASSERT_EQ(::stat((j["lower_dirs"][1].get<std::string>() + "/home/owned-1000").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kBase + 1000);
  EXPECT_EQ(Tmp(), 0u);
}

// A multi-arch image (an index pushed with skopeo --all): the linux/amd64
// manifest is chosen; the image can be pulled by the index digest too.
TEST_F(OciTest, PullIndexPicksLinuxAmd64AndByDigest) {
  MakeTrees();
  auto b = Py({kScripts + "/make_layout.py", work_ + "/layout", "--tag", "multi", "--multi-arch",
               "--config", R"({"Cmd":["cat","/etc/keep"]})", "--layer", work_ + "/base"});
  ASSERT_EQ(b.code, 0) << b.err;
  const std::string index_digest(Trim(b.out));
  int port = StartRegistry();
  auto push = RunProcess({"/usr/bin/skopeo", "copy", "--quiet", "--all", "--dest-tls-verify=false",
                          "oci:" + work_ + "/layout:multi",
                          "docker://127.0.0.1:" + std::to_string(port) + "/team/multi:v1"},
                         {"HOME=" + work_});
  ASSERT_EQ(push.code, 0) << push.err;
  const std::string repo = "127.0.0.1:" + std::to_string(port) + "/team/multi";
  ASSERT_EQ(Wb({"image", "pull", repo + ":v1"}).code, 0);
  auto in = nlohmann::json::parse(Wb({"image", "inspect", repo + ":v1"}).out);
  EXPECT_EQ(in["digest"], index_digest);
  auto r = Wb({"run", "--image", repo + ":v1"});
  EXPECT_EQ(r.out, "keep\n") << r.err;
  // By digest; the config blob and layer are shared with the tag's image.
  const std::string by_digest = repo + "@" + index_digest;
  auto d = Wb({"image", "pull", by_digest});
  ASSERT_EQ(d.code, 0) << d.err;
  EXPECT_EQ(d.out, by_digest + "\n");
  EXPECT_EQ(Layers(), 1u);
  auto wrong = Wb({"image", "pull", repo + "@sha256:" + std::string(64, '0')});
  EXPECT_EQ(wrong.code, 125);
  EXPECT_NE(wrong.err.find("manifest unknown"), std::string::npos) << wrong.err;
}

TEST_F(OciTest, BasicAuthFromDockerConfig) {
  MakeTrees();
  std::string layout = Layout("layout", "v1", {"base"});
  int port = StartRegistry(true);
  Push(layout, "v1", port, "private/img:v1", "tester:s3cret");
  const std::string reg = "127.0.0.1:" + std::to_string(port);
  auto anon = Wb({"image", "pull", reg + "/private/img:v1"});
  EXPECT_EQ(anon.code, 125);
  EXPECT_NE(anon.err.find("requires a login"), std::string::npos) << anon.err;
  EXPECT_EQ(Images(), 0u);
  const std::string auth_file = work_ + "/auth.json";
  WriteText(auth_file,
            R"({"auths":{")" + reg + R"(":{"auth":"dGVzdGVyOndyb25n"}}})");  // tester:wrong
  auto wrong = Wb({"image", "pull", reg + "/private/img:v1"}, {"REGISTRY_AUTH_FILE=" + auth_file});
  EXPECT_EQ(wrong.code, 125);
  EXPECT_NE(wrong.err.find("access denied"), std::string::npos) << wrong.err;
  // ~/.docker/config.json
  ASSERT_TRUE(MkdirAll(work_ + "/.docker").ok());
  WriteText(work_ + "/.docker/config.json",
            R"({"auths":{")" + reg + R"(":{"auth":"dGVzdGVyOnMzY3JldA=="}}})");
  auto ok = Wb({"image", "pull", reg + "/private/img:v1"});
  ASSERT_EQ(ok.code, 0) << ok.err;
  auto r = Wb({"run", "--image", reg + "/private/img:v1", "--", "cat", "/etc/motd"});
  EXPECT_EQ(r.out, "hello\n");
}

TEST_F(OciTest, BearerTokenFlowAndSharedConcurrentDownloads) {
  MakeTrees();
  std::string layout = Layout("layout", "v1", {"base", "top"});
  int port = StartFake(layout);
  const std::string ref = "127.0.0.1:" + std::to_string(port) + "/team/img:v1";
  std::vector<std::thread> pulls;
  std::vector<ProcResult> results(4);
  for (size_t i = 0; i < results.size(); ++i) {
    pulls.emplace_back([&, i] { results[i] = Wb({"image", "pull", ref}); });
  }
  for (auto& t : pulls) t.join();
  for (const auto& r : results) EXPECT_EQ(r.code, 0) << r.err;
  // Each blob crossed the wire once.
  auto stats =
      RunProcess({"/usr/bin/curl", "-s", "http://127.0.0.1:" + std::to_string(port) + "/stats"});
  auto j = nlohmann::json::parse(stats.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << stats.out;
  EXPECT_EQ(j.size(), 3u);  // config + 2 layers
  for (const auto& [digest, n] : j.items()) EXPECT_EQ(n.get<int>(), 1) << digest;
  auto r = Wb({"run", "--image", ref, "--", "cat", "/opt/app/new.txt"});
  EXPECT_EQ(r.out, "new\n") << r.err;
  EXPECT_EQ(Tmp(), 0u);
}

TEST_F(OciTest, RetriesServerErrors) {
  MakeTrees();
  std::string layout = Layout("layout", "v1", {"base"});
  int port = StartFake(layout, {"--fail-first", "2"});
  auto p = Wb({"image", "pull", "127.0.0.1:" + std::to_string(port) + "/team/img:v1"});
  EXPECT_EQ(p.code, 0) << p.err;
}

// A registry that sends wrong or short blobs: the pull fails, naming the
// blob, and leaves the store as it was.
TEST_F(OciTest, CorruptAndTruncatedBlobsAreRejected) {
  MakeTrees();
  std::string layout = Layout("layout", "v1", {"base", "top"});
  auto m = nlohmann::json::parse(*ReadFile(layout + "/index.json"));
  auto manifest = nlohmann::json::parse(*ReadFile(
      layout + "/blobs/sha256/" + m["manifests"][0]["digest"].get<std::string>().substr(7)));
  const std::string layer = manifest["layers"][0]["digest"];
  for (const std::string mode : {"--corrupt-blob", "--truncate-blob"}) {
    int port = StartFake(layout, {mode, layer});
    auto p = Wb({"image", "pull", "127.0.0.1:" + std::to_string(port) + "/team/img:v1"});
    EXPECT_EQ(p.code, 125) << mode;
    EXPECT_NE(p.err.find(layer), std::string::npos) << p.err;
    EXPECT_NE(p.err.find(mode == "--corrupt-blob" ? "digest mismatch" : "truncated"),
              std::string::npos)
        << p.err;
    EXPECT_EQ(Images(), 0u);
    EXPECT_EQ(Layers(), 0u);
    EXPECT_EQ(Tmp(), 0u);
    EXPECT_FALSE(PathExists(state_ + "/blobs/sha256/" + layer.substr(7)));
  }
}

TEST_F(OciTest, ImportDockerArchiveAndOciLayouts) {
  MakeTrees();
  std::string layout = Layout("layout", "v1", {"base", "top"});
  // docker-archive by skopeo, with its tag.
  const std::string archive = work_ + "/img.tar";
  auto s = RunProcess({"/usr/bin/skopeo", "copy", "--quiet", "oci:" + layout + ":v1",
                       "docker-archive:" + archive + ":example.com/team/archived:v2"},
                      {"HOME=" + work_});
  ASSERT_EQ(s.code, 0) << s.err;
  auto i = Wb({"image", "import", archive});
  ASSERT_EQ(i.code, 0) << i.err;
  EXPECT_EQ(i.out, "example.com/team/archived:v2\n");
  auto r = Wb({"run", "--image", "example.com/team/archived:v2", "--", "sh", "-c",
               "cat /opt/app/new.txt; ls /etc"});
  EXPECT_EQ(r.out, "new\nkeep\n") << r.err;
  // An OCI layout directory names only a tag: --name is required.
  auto noname = Wb({"image", "import", layout});
  EXPECT_EQ(noname.code, 125);
  EXPECT_NE(noname.err.find("--name"), std::string::npos) << noname.err;
  auto dir = Wb({"image", "import", layout, "--name", "local/fromdir:1"});
  ASSERT_EQ(dir.code, 0) << dir.err;
  EXPECT_EQ(dir.out, "docker.io/local/fromdir:1\n");
  // ... and as a tar; short names resolve.
  ASSERT_EQ(RunProcess({"/bin/tar", "-C", layout, "-cf", work_ + "/layout.tar", "."}).code, 0);
  auto tar = Wb({"image", "import", work_ + "/layout.tar", "--name", "fromtar"});
  ASSERT_EQ(tar.code, 0) << tar.err;
  auto t = Wb({"run", "--image", "fromtar", "--", "cat", "/etc/keep"});
  EXPECT_EQ(t.out, "keep\n") << t.err;
  // The OCI imports share every layer; the docker archive's are uncompressed
  // (other digests): 2 + 2 layer dirs.
  EXPECT_EQ(Layers(), 4u);
  EXPECT_EQ(Tmp(), 0u);
  // docker save links a layer it holds twice: followed inside the archive,
  // refused when it leads out.
  const std::string da = work_ + "/da";
  ASSERT_TRUE(MkdirAll(da).ok());
  ASSERT_EQ(RunProcess({"/bin/tar", "-C", da, "-xf", archive}).code, 0);
  auto man = nlohmann::json::parse(*ReadFile(da + "/manifest.json"));
  const nlohmann::json layer_files = man[0]["Layers"];
  ASSERT_EQ(layer_files.size(), 2u);
  // A docker archive has no manifest: its config's rootfs.diff_ids are all
  // that bind the layer tars to the image (named by the config's digest).
  // Swapped, or one missing: refused, nothing stored.
  const size_t images_before = Images(), layers_before = Layers();
  man[0]["Layers"] = nlohmann::json::array({layer_files[1], layer_files[0]});
  WriteText(da + "/manifest.json", man.dump());
  auto swapped = Wb({"image", "import", da, "--name", "swapped:v1"});
  EXPECT_EQ(swapped.code, 125);
  EXPECT_NE(swapped.err.find("diff_id mismatch"), std::string::npos) << swapped.err;
  EXPECT_NE(swapped.err.find("layer 1"), std::string::npos) << swapped.err;
  man[0]["Layers"] = nlohmann::json::array({layer_files[0]});
  WriteText(da + "/manifest.json", man.dump());
  auto dropped = Wb({"image", "import", da, "--name", "dropped:v1"});
  EXPECT_EQ(dropped.code, 125);
  EXPECT_NE(dropped.err.find("names 2 layers, the archive holds 1"), std::string::npos)
      << dropped.err;
  EXPECT_EQ(Images(), images_before);
  EXPECT_EQ(Layers(), layers_before);
  EXPECT_EQ(Tmp(), 0u);
  man[0]["Layers"] = layer_files;
  const std::string first = man[0]["Layers"][0];
  ASSERT_EQ(::symlink(("./" + first).c_str(), (da + "/linked.tar").c_str()), 0);
  man[0]["Layers"][0] = "linked.tar";
  WriteText(da + "/manifest.json", man.dump());
  auto linked = Wb({"image", "import", da, "--name", "linked:v1"});
  EXPECT_EQ(linked.code, 0) << linked.err;
  ASSERT_EQ(::symlink("/etc/passwd", (da + "/evil.tar").c_str()), 0);
  man[0]["Layers"][0] = "evil.tar";
  WriteText(da + "/manifest.json", man.dump());
  auto evil = Wb({"image", "import", da, "--name", "evil:v1"});
  EXPECT_EQ(evil.code, 125);
  EXPECT_NE(evil.err.find("resolves outside the archive"), std::string::npos) << evil.err;
  auto bad = Wb({"image", "import", work_ + "/base"});
  EXPECT_EQ(bad.code, 125);
  EXPECT_NE(bad.err.find("neither a docker-archive"), std::string::npos) << bad.err;
}

// Hostile layers and blobs: rejected with a clear error, nothing written
// outside the store, the store unchanged.
TEST_F(OciTest, HostileArchivesAreRejected) {
  MakeTrees();
  const std::string outside = work_ + "/outside";
  ASSERT_TRUE(MkdirAll(outside).ok());
  WriteText(outside + "/file", "precious\n");
  struct Case {
    std::string kind, needle;
  };
  for (const Case& c : std::vector<Case>{{"dotdot", "'..'"},
                                         {"absolute", "absolute path"},
                                         {"symlink", "symlink"},
                                         {"hardlink", "'..'"}}) {
    const std::string tar = work_ + "/" + c.kind + ".tar";
    ASSERT_EQ(Py({kScripts + "/make_hostile.py", c.kind, tar, outside}).code, 0);
    std::string layout = Layout("hostile-" + c.kind, "v1", {"base"}, "{}", {tar});
    auto r = Wb({"image", "import", layout, "--name", "hostile:" + c.kind});
    EXPECT_EQ(r.code, 125) << c.kind;
    EXPECT_NE(r.err.find(c.needle), std::string::npos) << c.kind << ": " << r.err;
    EXPECT_EQ(CountEntries(outside), 1u) << c.kind;
    EXPECT_EQ(*ReadFile(outside + "/file"), "precious\n");
    EXPECT_EQ(Images(), 0u);
    EXPECT_EQ(Tmp(), 0u);
  }
  // The base layer (valid) may be in place; no hostile layer is.
  EXPECT_LE(Layers(), 1u);
  // Pulled from a registry: the same (the unpack fails on its worker thread).
  int port = StartFake(work_ + "/hostile-symlink");
  auto pulled = Wb({"image", "pull", "127.0.0.1:" + std::to_string(port) + "/team/img:v1"});
  EXPECT_EQ(pulled.code, 125);
  EXPECT_NE(pulled.err.find("symlink"), std::string::npos) << pulled.err;
  EXPECT_EQ(CountEntries(outside), 1u);
  EXPECT_EQ(Images(), 0u);
  EXPECT_EQ(Tmp(), 0u);
  EXPECT_LE(Layers(), 1u);
  // A blob whose content does not match its digest, and a short one.
  std::string layout = Layout("layout", "v1", {"base", "top"});
  auto idx = nlohmann::json::parse(*ReadFile(layout + "/index.json"));
  auto manifest = nlohmann::json::parse(*ReadFile(
      layout + "/blobs/sha256/" + idx["manifests"][0]["digest"].get<std::string>().substr(7)));
  const std::string top = manifest["layers"][1]["digest"];
  const std::string blob = layout + "/blobs/sha256/" + top.substr(7);
  std::string good = *ReadFile(blob);
  std::string flipped = good;
  flipped[flipped.size() / 2] ^= 0x55;
  WriteText(blob, flipped);
  auto mism = Wb({"image", "import", layout, "--name", "bad:digest"});
  EXPECT_EQ(mism.code, 125);
  EXPECT_NE(mism.err.find("digest mismatch"), std::string::npos) << mism.err;
  WriteText(blob, good.substr(0, good.size() / 2));
  auto trunc = Wb({"image", "import", layout, "--name", "bad:short"});
  EXPECT_EQ(trunc.code, 125);
  EXPECT_NE(trunc.err.find("truncated"), std::string::npos) << trunc.err;
  EXPECT_EQ(Images(), 0u);
  EXPECT_EQ(Tmp(), 0u);
  EXPECT_FALSE(PathExists(state_ + "/blobs/sha256/" + top.substr(7)));
}

// A small layer that unpacks big (zeros compress 1000:1), or into many
// files: refused past the layer and image caps, nothing left behind.
TEST_F(OciTest, UnpackedSizeAndFileCountAreCapped) {
  MakeTrees();
  const std::string bomb = work_ + "/bomb", many = work_ + "/many";
  ASSERT_TRUE(MkdirAll(bomb).ok());
  ASSERT_TRUE(MkdirAll(many).ok());
  // 24 MiB of zeros (sparse here; about 24 KB once gzipped in the layer).
  ASSERT_EQ(RunProcess({"/usr/bin/truncate", "-s", "24M", bomb + "/zeros"}).code, 0);
  for (int i = 0; i < 200; ++i) WriteText(many + "/f" + std::to_string(i), "");
  std::string layout = Layout("capped", "v1", {"base", "bomb"});
  struct Case {
    std::vector<std::string> env;
    std::string layout, needle;
    size_t layers;  // unpacked by now: the layers within the caps stay (until a prune)
  };
  std::string files = Layout("files", "v1", {"base", "many"});
  std::string two = Layout("two", "v1", {"bomb", "many"});
  for (const Case& c : std::vector<Case>{
           {{"WARMBOX_MAX_LAYER_SIZE=16m"},
            layout,
            "more than 16777216 bytes unpacked (WARMBOX_MAX_LAYER_SIZE=16m)",
            1},
           {{"WARMBOX_MAX_LAYER_FILES=100"}, files, "more than 100 entries", 1},
           // The image's caps count all its layers: the bomb fits (24 MiB,
           // 2 entries), the 200 files of the next layer do not.
           {{"WARMBOX_MAX_IMAGE_SIZE=24m", "WARMBOX_MAX_IMAGE_FILES=150"},
            two,
            "(WARMBOX_MAX_IMAGE_FILES=150)",
            2},
           {{"WARMBOX_MAX_LAYER_SIZE=lots"}, layout, "expected a size such as 16g", 2}}) {
    SCOPED_TRACE(c.needle);
    auto r = Wb({"image", "import", c.layout, "--name", "capped:v1"}, c.env);
    EXPECT_EQ(r.code, 125) << r.err;
    EXPECT_NE(r.err.find(c.needle), std::string::npos) << r.err;
    EXPECT_EQ(Images(), 0u);
    EXPECT_EQ(Tmp(), 0u);
    EXPECT_EQ(Layers(), c.layers);
  }
  // Within the caps (the defaults), the same image imports and runs.
  auto ok = Wb({"image", "import", layout, "--name", "capped:v1"});
  ASSERT_EQ(ok.code, 0) << ok.err;
  auto r = Wb({"run", "--image", "capped:v1", "--", "stat", "-c", "%s", "/zeros"});
  EXPECT_EQ(r.out, "25165824\n") << r.err;
}

// What a layer may carry, unpacked as the user namespace allows (zstd).
TEST_F(OciTest, LayerFeaturesUnpackAsTheSandboxAllows) {
  MakeTrees();
  const std::string tar = work_ + "/features.tar";
  ASSERT_EQ(Py({kScripts + "/make_hostile.py", "features", tar, "/unused"}).code, 0);
  auto r = Py({kScripts + "/make_layout.py", work_ + "/layout", "--tag", "v1", "--compress", "zstd",
               "--layer", work_ + "/base", "--raw-layer", tar});
  ASSERT_EQ(r.code, 0) << r.err;
  auto i = Wb({"image", "import", work_ + "/layout", "--name", "features:v1"});
  ASSERT_EQ(i.code, 0) << i.err;
  auto run = Wb({"run", "--image", "features:v1", "--", "sh", "-c",
                 "cd /f; [ $(stat -c %i data) = $(stat -c %i hard) ] && echo hardlink; test -p "
                 "fifo && echo fifo; "
                 "test -e null || echo no-device; stat -c '%a %u' suid; cat abs-link; "
                 "stat -c '%u %g' /implicit /implicit/dir /implicit/dir/file"});
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.out, "hardlink\nfifo\nno-device\n4755 1000\nkeep\n0 0\n0 0\n5 5\n");
  auto in = nlohmann::json::parse(Wb({"image", "inspect", "features:v1"}).out);
  const std::string top = in["lower_dirs"][0];
  char buf[64];
  ssize_t n = ::lgetxattr((top + "/f/x").c_str(), "user.note", buf, sizeof buf);
  EXPECT_EQ(std::string(buf, n > 0 ? static_cast<size_t>(n) : 0), "hi");
  EXPECT_LT(::lgetxattr((top + "/f/x").c_str(), "security.capability", buf, sizeof buf), 0);
  EXPECT_EQ(errno, ENODATA);
}

TEST_F(OciTest, ImagesShareLayersAndPruneKeepsWhatIsUsed) {
  MakeTrees();
  ASSERT_TRUE(MkdirAll(work_ + "/top2/etc").ok());
  WriteText(work_ + "/top2/etc/second", "2\n");
  std::string l1 = Layout("l1", "v1", {"base", "top"});
  std::string l2 = Layout("l2", "v1", {"base", "top2"});
  int port = StartRegistry();
  Push(l1, "v1", port, "team/one:v1");
  Push(l2, "v1", port, "team/two:v1", "", "v2s2");  // Docker media types, same layer digests
  const std::string reg = "127.0.0.1:" + std::to_string(port);
  ASSERT_EQ(Wb({"image", "pull", reg + "/team/one:v1"}).code, 0);
  ASSERT_EQ(Wb({"image", "pull", reg + "/team/two:v1"}).code, 0);
  // 3 layers (the base once) + 2 configs + 2 manifests.
  EXPECT_EQ(Layers(), 3u);
  EXPECT_EQ(Blobs(), 7u);
  auto two = nlohmann::json::parse(Wb({"image", "inspect", reg + "/team/two:v1"}).out);
  auto manifest = nlohmann::json::parse(
      *ReadFile(state_ + "/blobs/sha256/" + two["digest"].get<std::string>().substr(7)));
  EXPECT_EQ(manifest["mediaType"], "application/vnd.docker.distribution.manifest.v2+json");
  auto rm = Wb({"image", "rm", reg + "/team/one:v1"});
  ASSERT_EQ(rm.code, 0) << rm.err;
  auto pr = Wb({"image", "prune"});
  ASSERT_EQ(pr.code, 0) << pr.err;
  EXPECT_NE(pr.out.find("removed 3 blob(s)"), std::string::npos) << pr.out;
  EXPECT_EQ(Layers(), 2u);
  EXPECT_EQ(Blobs(), 4u);
  auto r = Wb({"run", "--image", reg + "/team/two:v1", "--", "cat", "/etc/second", "/etc/motd"});
  EXPECT_EQ(r.out, "2\nhello\n") << r.err;
  auto gone = Wb({"run", "--image", reg + "/team/one:v1", "--", "true"});
  EXPECT_EQ(gone.code, 125);
  EXPECT_NE(gone.err.find("no such image"), std::string::npos) << gone.err;
  auto norm = Wb({"image", "rm", "nothing-here"});
  EXPECT_EQ(norm.code, 125);
}

TEST_F(OciTest, UnreachableRegistryIsAClearError) {
  auto hub = Wb({"image", "pull", "python:3.12-slim"});
  EXPECT_EQ(hub.code, 125);
  EXPECT_NE(hub.err.find("registry-1.docker.io"), std::string::npos) << hub.err;
  auto bad = Wb({"image", "pull", "Bad/Name"});
  EXPECT_EQ(bad.code, 125);
  EXPECT_NE(bad.err.find("bad repository component"), std::string::npos) << bad.err;
  EXPECT_EQ(Images(), 0u);
}

// The pool daemon pulls what --warm needs before warming, and a run naming a
// missing image pulls it first.
TEST_F(OciTest, PoolPullsMissingImages) {
  MakeTrees();
  std::string layout = Layout("layout", "v1", {"base", "top"});
  ASSERT_TRUE(MkdirAll(work_ + "/top2/etc").ok());
  WriteText(work_ + "/top2/etc/second", "2\n");
  Layout("layout", "v2", {"base", "top2"});
  int port = StartRegistry();
  Push(layout, "v1", port, "team/img:v1");
  Push(layout, "v2", port, "team/img:v2");
  const std::string reg = "127.0.0.1:" + std::to_string(port);
  const std::string sock = work_ + "/pool.sock";
  SpawnOptions o;
  o.path = wb::testing::BuildDir() + "/warmbox";
  o.argv = {"warmbox",
            "pool",
            "start",
            "--socket",
            sock,
            "--image",
            "",
            "--size",
            "1",
            "--warm",
            reg + "/team/img:v1=1"};
  for (char** e = environ; *e; ++e) o.env.push_back(*e);
  for (const auto& kv : Env()) o.env.push_back(kv);
  o.pdeath_signal = SIGKILL;
  auto d = ChildProcess::Spawn(o);
  ASSERT_TRUE(d.ok());
  ChildProcess daemon = std::move(*d);
  ASSERT_TRUE(Eventually(
      [&] {
        return Wb({"pool", "status", "--socket", sock}).code == 0;
      },
      30000));
  auto one = Wb({"pool", "run", "--socket", sock, "--image", reg + "/team/img:v1", "--", "cat",
                 "/opt/app/new.txt"});
  EXPECT_EQ(one.out, "new\n") << one.err;
  auto two = Wb({"pool", "run", "--socket", sock, "--image", reg + "/team/img:v2", "--", "cat",
                 "/etc/second"});
  EXPECT_EQ(two.out, "2\n") << two.err;
  auto none = Wb({"pool", "run", "--socket", sock, "--image", reg + "/team/none:v1", "--", "true"});
  EXPECT_EQ(none.code, 125);
  EXPECT_NE(none.err.find("manifest unknown"), std::string::npos) << none.err;
  EXPECT_EQ(Wb({"pool", "stop", "--socket", sock}).code, 0);
  auto st = daemon.Wait();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->code, 0);
}

}  // namespace
}  // namespace wb
