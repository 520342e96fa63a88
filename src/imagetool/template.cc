// warmbox-image build-debian: mmdebstrap writes the template's root
// filesystem as one compressed tar; we wrap it as a docker-archive (a layer,
// a config carrying User/WorkingDir/Env, a manifest) in a work dir under the
// store's tmp/ and import that like any archive, so the image is an ordinary
// OCI image of the store (blob, shared layer dir, image.json).
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "base/child.h"
#include "base/fd.h"
#include "base/fs.h"
#include "base/strings.h"
#include "image/debian_template.h"
#include "imagetool/embedded.h"
#include "imagetool/ops.h"
#include "imagetool/sha256.h"
#include "imagetool/unpack.h"

extern char** environ;

namespace wb::imagetool {
namespace {

constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// The environment mmdebstrap runs with: ours (proxies, TMPDIR), and a PATH
// when we have none (the daemon may be started with an empty environment;
// mmdebstrap runs apt-get, dpkg and chroot by name).
std::vector<std::string> ToolEnv() {
  std::vector<std::string> env;
  bool has_path = false;
  for (char** e = environ; *e; ++e) {
    env.emplace_back(*e);
    has_path |= StartsWith(*e, "PATH=");
  }
  if (!has_path) env.push_back(std::string("PATH=") + kDefaultPath);
  return env;
}

std::string FindInPath(const std::string& prog) {
  const char* path = ::getenv("PATH");
  for (const auto& dir : Split(path && *path ? path : kDefaultPath, ':')) {
    if (dir.empty()) continue;
    std::string full = dir + "/" + prog;
    if (::access(full.c_str(), X_OK) == 0) return full;
  }
  return "";
}

// The host's apt source files, sources.list-style and deb822.
std::vector<AptSourceText> HostAptSources() {
  std::vector<AptSourceText> out;
  if (auto t = ReadFile("/etc/apt/sources.list"); t.ok()) out.push_back({*t, false});
  const std::string dir = "/etc/apt/sources.list.d";
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) names.emplace_back(e->d_name);
    ::closedir(d);
  }
  std::sort(names.begin(), names.end());
  for (const auto& n : names) {
    bool deb822 = n.size() > 8 && n.compare(n.size() - 8, 8, ".sources") == 0;
    bool list = n.size() > 5 && n.compare(n.size() - 5, 5, ".list") == 0;
    if (!deb822 && !list) continue;
    if (auto t = ReadFile(dir + "/" + n); t.ok()) out.push_back({*t, deb822});
  }
  return out;
}

// The last lines of a command's output, on one line (the daemon and the CLI
// report an error as one line).
std::string Tail(const std::string& out, size_t lines) {
  std::vector<std::string> kept;
  for (const auto& l : Split(out, '\n')) {
    std::string_view t = Trim(l);
    if (!t.empty()) kept.emplace_back(t);
  }
  if (kept.size() > lines) kept.erase(kept.begin(), kept.end() - static_cast<ptrdiff_t>(lines));
  std::string s;
  for (const auto& l : kept) s += (s.empty() ? "" : " | ") + l;
  return s.empty() ? "(no output)" : s;
}

// argv as a readable command line (the hook shortened: it is ours).
std::string Describe(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) {
    s += s.empty() ? "" : " ";
    s += StartsWith(a, "--customize-hook=") ? "--customize-hook=..." : a;
  }
  return s;
}

// Runs mmdebstrap; its output goes to our stderr unless quiet, and its last
// lines are kept for the error.
Result<void> RunMmdebstrap(const std::vector<std::string>& argv, bool quiet) {
  std::string exe = FindInPath("mmdebstrap");
  if (exe.empty()) {
    return Fail(ErrorCode::kFailedPrecondition, "run", "mmdebstrap",
                "mmdebstrap is not installed (apt-get install mmdebstrap; scripts/setup "
                "installs it)");
  }
  SpawnOptions o;
  o.path = exe;
  o.argv = argv;
  o.env = ToolEnv();
  // mmdebstrap cleans up its chroot (mounts, temp dir) on SIGTERM: it gets
  // one if we die.
  o.pdeath_signal = SIGTERM;
  Pipe out = WB_TRY(MakePipe());
  o.fds = {{out.write.get(), 1}, {out.write.get(), 2}};
  ChildProcess child = WB_TRY(ChildProcess::Spawn(o));
  out.write.reset();
  std::string tail;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(out.read.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("read", "mmdebstrap's output");
    }
    if (n == 0) break;
    if (!quiet) (void)WriteAll(2, std::string_view(buf, static_cast<size_t>(n)));
    tail.append(buf, static_cast<size_t>(n));
    if (tail.size() > 16384) tail.erase(0, tail.size() - 8192);
  }
  ExitStatus st = WB_TRY(child.Wait());
  if (st.code == 0 && !st.signal) return Ok();
  return Fail(ErrorCode::kUnavailable, "run", Describe(argv), st.Describe() + ": " + Tail(tail, 6));
}

// dst as a hard link of src, or a copy on another file system.
Result<void> LinkOrCopy(const std::string& src, const std::string& dst) {
  if (::link(src.c_str(), dst.c_str()) == 0) return Ok();
  if (errno != EXDEV && errno != EPERM) return Errno("link", src + " -> " + dst);
  UniqueFd in(::open(src.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) return Errno("open", src);
  UniqueFd out(::open(dst.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!out) return Errno("create", dst);
  std::string b(1 << 20, '\0');
  for (;;) {
    ssize_t n = ::read(in.get(), b.data(), b.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("read", src);
    }
    if (n == 0) return Ok();
    WB_RETURN_IF_ERROR(WriteAll(out.get(), std::string_view(b.data(), static_cast<size_t>(n))));
  }
}

// The root filesystem tar of spec at rootfs: from $WARMBOX_TEMPLATE_CACHE
// when it holds this key (tests and CI build each template once for every
// state dir), else from mmdebstrap (and then kept there).
Result<void> MakeRootfs(const TemplateSpec& spec, const std::string& work,
                        const std::string& rootfs, bool quiet) {
  auto run = [&]() -> Result<void> {
    std::vector<std::string> sources = ChrootSources(HostAptSources(), spec.suite);
    std::string sources_file;
    if (!sources.empty()) {
      std::string text;
      for (const auto& s : sources) text += s + "\n";
      sources_file = work + "/sources.list";
      WB_RETURN_IF_ERROR(WriteFileAtomic(sources_file, text));
    }
    return RunMmdebstrap(MmdebstrapArgv(spec, rootfs, sources_file), quiet);
  };
  const char* cache = ::getenv("WARMBOX_TEMPLATE_CACHE");
  if (!cache || !*cache) return run();
  const std::string dir = cache;
  WB_RETURN_IF_ERROR(MkdirAll(dir, 0700));
  const std::string entry = dir + "/" + Sha256Of(spec.Key()).substr(7, 24);
  // One build per key however many stores want it at once.
  UniqueFd lock = WB_TRY(LockPath(entry + ".lock", true));
  if (PathExists(entry + ".tar.zst")) {
    if (!quiet)
      std::fprintf(stderr, "template %s: root filesystem from %s\n", spec.name.c_str(),
                   (entry + ".tar.zst").c_str());
    return LinkOrCopy(entry + ".tar.zst", rootfs);
  }
  WB_RETURN_IF_ERROR(run());
  const std::string tmp = entry + ".tmp-" + WB_TRY(RandomHex(4));
  WB_RETURN_IF_ERROR(LinkOrCopy(rootfs, tmp));
  if (::rename(tmp.c_str(), (entry + ".tar.zst").c_str()) != 0) {
    Error e = Errno("rename", tmp);
    (void)::unlink(tmp.c_str());
    return e;
  }
  return WriteFileAtomic(entry + ".key", spec.Key() + "\n");
}

// "sha256:..." of the code interpreter's files (names and bytes): part of
// a code interpreter template's source, so a changed server rebuilds it.
std::string InterpDigest() {
  std::string all;
  for (const auto& f : InterpFiles()) {
    all += std::string(f.name) + '\0' + std::to_string(f.data.size()) + '\0';
    all += f.data;
  }
  return Sha256Of(all);
}

// The code interpreter's layer: a plain tar of kInterpDir (and its parents,
// as the rootfs has them) with the server's files, root-owned, 0644, and a
// fixed mtime so the same files make the same layer digest.
Result<void> WriteInterpLayer(const std::string& path) {
  struct archive* a = archive_write_new();
  if (!a) return Fail(ErrorCode::kInternal, "archive_write_new", path, "out of memory");
  auto fail = [&](const char* call) {
    Error e = Fail(ErrorCode::kInternal, call, path, archive_error_string(a));
    archive_write_free(a);
    return e;
  };
  if (archive_write_set_format_pax_restricted(a) != ARCHIVE_OK) return fail("archive format");
  if (archive_write_open_filename(a, path.c_str()) != ARCHIVE_OK) return fail("archive open");
  auto add = [&](const std::string& name, mode_t mode, std::string_view data) -> bool {
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_mode(e, mode);
    archive_entry_set_uid(e, 0);
    archive_entry_set_gid(e, 0);
    archive_entry_set_mtime(e, 1, 0);
    archive_entry_set_size(e, static_cast<la_int64_t>(data.size()));
    bool ok = archive_write_header(a, e) == ARCHIVE_OK &&
              (data.empty() || archive_write_data(a, data.data(), data.size()) ==
                                   static_cast<la_ssize_t>(data.size()));
    archive_entry_free(e);
    return ok;
  };
  std::string dir;
  for (const auto& part : Split(std::string_view(kInterpDir).substr(1), '/')) {
    dir += (dir.empty() ? "" : "/") + part;
    if (!add(dir + "/", S_IFDIR | 0755, {})) return fail("archive write");
  }
  for (const auto& f : InterpFiles()) {
    if (!add(dir + "/" + std::string(f.name), S_IFREG | 0644, f.data)) return fail("archive write");
  }
  if (archive_write_close(a) != ARCHIVE_OK) return fail("archive close");
  archive_write_free(a);
  return Ok();
}

// Wraps the layers (files in work, bottom first) as a docker-archive in work.
Result<void> WriteArchive(const std::string& work, const std::vector<std::string>& layers,
                          bool code_interpreter) {
  nlohmann::json diff_ids = nlohmann::json::array();
  for (const auto& l : layers) diff_ids.push_back(WB_TRY(UncompressedDigest(work + "/" + l)));
  const ImageConfig c = TemplateImageConfig(code_interpreter);
  nlohmann::json cfg = {
      {"Env", c.env}, {"Cmd", c.cmd}, {"WorkingDir", c.working_dir}, {"User", c.user}};
  for (const auto& [k, v] : TemplateLabels(code_interpreter)) cfg["Labels"][k] = v;
  nlohmann::json config = {{"architecture", "amd64"},
                           {"os", "linux"},
                           {"config", cfg},
                           {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
  WB_RETURN_IF_ERROR(WriteFileAtomic(work + "/config.json", config.dump()));
  nlohmann::json manifest = nlohmann::json::array(
      {{{"Config", "config.json"}, {"RepoTags", nlohmann::json::array()}, {"Layers", layers}}});
  return WriteFileAtomic(work + "/manifest.json", manifest.dump());
}

}  // namespace

namespace {

Result<Image> Build(ImageStore& store, const TemplateBuild& b, Progress& p) {
  auto os = ReadFile("/etc/os-release");
  if (!os.ok()) os = ReadFile("/usr/lib/os-release");
  if (!os.ok()) return os.error();
  std::string suite = WB_TRY(OsReleaseCodename(*os));
  TemplateSpec spec = WB_TRY(PlanTemplate(b.name, suite, b.extra_packages));
  const std::string source = spec.Source(InterpDigest());
  WB_RETURN_IF_ERROR(store.PrepareOciDirs());
  // Held shared for the whole build: prune (exclusive) leaves our work dir
  // under tmp/ alone, and the per-name lock file below is only removed by a
  // prune.
  UniqueFd store_lock = WB_TRY(LockPath(store.LocksDir() + "/store.lock", false));
  // One build of a name at a time (the CLI and a daemon, two daemons): the
  // second finds the first one's image in the cache check.
  UniqueFd name_lock = WB_TRY(
      LockPath(store.LocksDir() + "/template-" + Sha256Of(b.name).substr(7, 24) + ".lock", true));
  if (!b.force) {
    auto cur = store.Get(b.name);
    if (cur.ok() && cur->name == b.name && cur->source == source) {
      if (!b.quiet)
        std::fprintf(stderr, "template %s: up to date (%s)\n", b.name.c_str(), source.c_str());
      return *cur;
    }
  }
  const std::string work = store.TmpDir() + "/template-" + WB_TRY(RandomHex(6));
  if (::mkdir(work.c_str(), 0700) != 0) return Errno("mkdir", work);
  auto run = [&]() -> Result<Image> {
    std::vector<std::string> layers = {"rootfs.tar.zst"};
    WB_RETURN_IF_ERROR(MakeRootfs(spec, work, work + "/" + layers[0], b.quiet));
    if (spec.code_interpreter) {
      layers.push_back("interp.tar");
      WB_RETURN_IF_ERROR(WriteInterpLayer(work + "/" + layers.back()));
    }
    WB_RETURN_IF_ERROR(WriteArchive(work, layers, spec.code_interpreter));
    ImportOptions io;
    io.local_name = true;
    io.source = source;
    return Import(store, work, b.name, p, io);
  };
  auto r = run();
  (void)RemoveTree(work);
  return r;
}

}  // namespace

Result<Image> BuildDebianTemplate(ImageStore& store, const TemplateBuild& b, Progress& p) {
  auto r = Build(store, b, p);
  if (!r.ok()) return r.error().Wrap("template " + b.name);
  return r;
}

}  // namespace wb::imagetool
