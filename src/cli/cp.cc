// warmbox cp: files and directory trees between the host and a live
// sandbox (ID:PATH on one side), modes kept, streamed in chunks either way.
// Every path inside the sandbox is resolved by its agent, as the sandbox
// user (-u), inside the sandbox's root (docs/security.md).
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <memory>

#include "cli/live_client.h"
#include "cli/verbs.h"

namespace wb::cli {
namespace {

using nlohmann::json;
using proto::FrameType;

constexpr size_t kChunk = 256 * 1024;

struct Remote {
  std::string socket, id, user;
};

std::string Base(const std::string& p) {
  std::string s = p;
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  size_t slash = s.rfind('/');
  return slash == std::string::npos ? s : s.substr(slash + 1);
}

std::string Join(const std::string& dir, const std::string& name) {
  return dir.empty() || dir.back() == '/' ? dir + name : dir + "/" + name;
}

Result<LiveConn> OpenFs(const Remote& r, json request) {
  if (!r.user.empty()) request["user"] = r.user;
  return LiveConn::Open(r.socket, {{"op", "fs"}, {"id", r.id}, {"request", request}});
}

// The remote path's stat, or nullopt when it does not exist.
Result<std::optional<json>> RemoteStat(const Remote& r, const std::string& path) {
  LiveConn c = WB_TRY(OpenFs(r, {{"op", "stat"}, {"path", path}}));
  auto body = Expect(c, FrameType::kFileReply);
  if (!body.ok()) {
    if (body.error().code == ErrorCode::kNotFound) return std::optional<json>();
    return body.error();
  }
  return std::optional<json>(json::parse(*body));
}

Result<void> Download(const Remote& r, const std::string& path, const std::string& local) {
  LiveConn c = WB_TRY(OpenFs(r, {{"op", "read"}, {"path", path}}));
  json st = json::parse(WB_TRY(Expect(c, FrameType::kFileReply)));
  mode_t mode = st.value("mode", 0644) & 07777;
  UniqueFd out(::open(local.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!out) return Errno("open", local);
  for (;;) {
    proto::Frame f = WB_TRY(c.Next());
    if (f.type == FrameType::kStdout) {
      WB_RETURN_IF_ERROR(WriteAll(out.get(), f.payload));
    } else if (f.type == FrameType::kFileEnd) {
      break;
    } else {
      return OpError(f).Wrap(r.id + ":" + path);
    }
  }
  if (::fchmod(out.get(), mode) != 0) return Errno("fchmod", local);
  return Ok();
}

Result<void> Upload(const Remote& r, const std::string& local, const std::string& path,
                    mode_t mode) {
  UniqueFd in(::open(local.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) return Errno("open", local);
  LiveConn c = WB_TRY(OpenFs(r, {{"op", "write"}, {"path", path}, {"mode", mode & 07777}}));
  std::string buf(kChunk, '\0');
  for (;;) {
    ssize_t n = ::read(in.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("read", local);
    if (n == 0) break;
    // A refusal mid-way (disk full, too large) arrives as `e` and the
    // agent closes: the write then fails and the frame says why.
    if (auto w = c.Send(FrameType::kStdin, std::string_view(buf.data(), n)); !w.ok()) {
      auto f = c.Next();
      if (f.ok()) return OpError(*f).Wrap(r.id + ":" + path);
      return w.error();
    }
  }
  WB_RETURN_IF_ERROR(c.Send(FrameType::kStdinClose, ""));
  if (auto b = Expect(c, FrameType::kFileReply); !b.ok()) return b.error().Wrap(r.id + ":" + path);
  return Ok();
}

Result<void> RemoteMkdir(const Remote& r, const std::string& path, mode_t mode) {
  LiveConn c = WB_TRY(OpenFs(r, {{"op", "mkdir"}, {"path", path}, {"mode", mode & 07777}}));
  if (auto b = Expect(c, FrameType::kFileReply); !b.ok()) return b.error().Wrap(r.id + ":" + path);
  return Ok();
}

Result<void> UploadTree(const Remote& r, const std::string& local, const std::string& path) {
  struct stat st;
  if (::lstat(local.c_str(), &st) != 0) return Errno("lstat", local);
  if (S_ISREG(st.st_mode)) return Upload(r, local, path, st.st_mode);
  if (S_ISLNK(st.st_mode)) {
    std::fprintf(stderr, "warmbox: skipped symlink %s\n", local.c_str());
    return Ok();
  }
  if (!S_ISDIR(st.st_mode)) {
    std::fprintf(stderr, "warmbox: skipped %s (not a file or directory)\n", local.c_str());
    return Ok();
  }
  WB_RETURN_IF_ERROR(RemoteMkdir(r, path, st.st_mode));
  DIR* d = ::opendir(local.c_str());
  if (!d) return Errno("opendir", local);
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (const auto& n : names) WB_RETURN_IF_ERROR(UploadTree(r, Join(local, n), Join(path, n)));
  return Ok();
}

Result<void> DownloadTree(const Remote& r, const std::string& path, const std::string& local,
                          const json& st) {
  if (st.value("type", "") == "file") return Download(r, path, local);
  if (st.value("type", "") != "dir") {
    std::fprintf(stderr, "warmbox: skipped %s:%s (a %s)\n", r.id.c_str(), path.c_str(),
                 st.value("type", "?").c_str());
    return Ok();
  }
  if (::mkdir(local.c_str(), 0700) != 0 && errno != EEXIST) return Errno("mkdir", local);
  LiveConn c = WB_TRY(OpenFs(r, {{"op", "list"}, {"path", path}, {"depth", 1}}));
  json list = json::parse(WB_TRY(Expect(c, FrameType::kFileReply)));
  for (const auto& e : list.value("entries", json::array())) {
    std::string name = e.value("name", "");
    if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos) {
      continue;
    }
    std::string sub = Join(path, name), dst = Join(local, name);
    if (e.value("type", "") == "symlink") {
      std::string target = e.value("symlink_target", "");
      if (::symlink(target.c_str(), dst.c_str()) != 0) return Errno("symlink", dst);
      continue;
    }
    WB_RETURN_IF_ERROR(DownloadTree(r, sub, dst, e));
  }
  if (::chmod(local.c_str(), st.value("mode", 0755) & 07777) != 0) return Errno("chmod", local);
  return Ok();
}

Result<int> DoCp(const std::string& socket, const std::string& user, const std::string& src,
                 const std::string& dst) {
  auto rs = SplitRemote(src), rd = SplitRemote(dst);
  if (rs && rd) {
    return Fail(ErrorCode::kInvalidArgument, "cp", src + " " + dst,
                "both sides are in sandboxes; copy through the host in two steps");
  }
  if (!rs && !rd) {
    return Fail(ErrorCode::kInvalidArgument, "cp", src + " " + dst,
                "neither side names a sandbox (ID:PATH)");
  }
  if (rs) {
    Remote r{SocketOrDefault(socket), rs->first, user};
    auto st = WB_TRY(RemoteStat(r, rs->second));
    if (!st) {
      return Fail(ErrorCode::kNotFound, "cp", src, "no such file or directory in the sandbox");
    }
    std::string local = dst;
    struct stat ls;
    if (::stat(dst.c_str(), &ls) == 0 && S_ISDIR(ls.st_mode)) local = Join(dst, Base(rs->second));
    WB_RETURN_IF_ERROR(DownloadTree(r, rs->second, local, *st));
    return 0;
  }
  Remote r{SocketOrDefault(socket), rd->first, user};
  struct stat ls;
  if (::lstat(src.c_str(), &ls) != 0) return Errno("lstat", src);
  std::string path = rd->second.empty() ? "." : rd->second;
  auto st = WB_TRY(RemoteStat(r, path));
  if (st && st->value("type", "") == "dir") path = Join(path, Base(src));
  WB_RETURN_IF_ERROR(UploadTree(r, src, path));
  return 0;
}

}  // namespace

Action AddCp(CLI::App& app) {
  auto socket = std::make_shared<std::string>();
  auto user = std::make_shared<std::string>();
  auto src = std::make_shared<std::string>();
  auto dst = std::make_shared<std::string>();
  CLI::App* cp =
      app.add_subcommand("cp", "copy files or directories to or from a live sandbox (ID:PATH)");
  cp->add_option("--socket", *socket, "daemon socket");
  cp->add_option("-u,--user", *user, "the sandbox user the files are read or written as");
  cp->add_option("src", *src, "ID:PATH or a local path")->required();
  cp->add_option("dst", *dst, "ID:PATH or a local path")->required();
  return [=](const GlobalOptions&) -> int {
    auto r = DoCp(*socket, *user, *src, *dst);
    if (!r.ok()) return ReportError(r.error());
    return *r;
  };
}

}  // namespace wb::cli
