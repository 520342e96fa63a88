// envd's filesystem messages in proto3 JSON (docs/e2b.md, "envd: files"),
// built from and parsed into the agent's file frames (docs/protocol.md,
// "Files (L)"). Pure: filesystem.cc and files.cc serve them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "proto/agent_proto.h"

namespace wb::daemon::e2b {

// --- requests ---------------------------------------------------------------------

// The fields of a Filesystem request, parsed as protobuf-es does: each
// field by its lowerCamelCase or its proto name (both in one object is
// invalid_argument), unknown fields ignored, absent ones their default.
struct FsRequest {
  std::string path;         // Stat, ListDir, MakeDir, Remove, WatchDir, CreateWatcher
  uint32_t depth = 0;       // ListDir (0: 1)
  std::string source;       // Move
  std::string destination;  // Move
  bool recursive = false;   // WatchDir, CreateWatcher
  bool include_entry = false;
  std::string watcher_id;  // GetWatcherEvents, RemoveWatcher
};
// invalid_argument naming the field when the body is not a JSON object or a
// field has the wrong type.
[[nodiscard]] Result<FsRequest> ParseFsRequest(std::string_view json);

// --- responses --------------------------------------------------------------------

// "2024-01-02T03:04:05.123456789Z" (UTC; the fraction as 0, 3, 6 or 9 digits).
std::string Rfc3339(int64_t unix_ns);
// EntryInfo: name, type (FILE_TYPE_FILE, _DIRECTORY, _SYMLINK; omitted for
// other types, which the SDK skips), path, size (a string: int64), mode
// (the permission bits, st_mode & 0777, as envd's Go FileMode.Perm()),
// permissions ("-rw-r--r--"), owner, group, modifiedTime, symlinkTarget
// (symlinks only). No metadata: warmbox keeps no user.e2b.* xattrs.
std::string EntryInfoJson(const proto::FileStat& st);
// {"entry":EntryInfo}
std::string EntryMessageJson(const proto::FileStat& st);
// {"entries":[EntryInfo...]}
std::string EntriesMessageJson(const std::vector<proto::FileStat>& entries);

// The name of an event under the watched directory root, as envd gives it:
// relative to root ("." for root itself).
std::string RelativeName(std::string_view root, std::string_view path);
// The agent's event type ("create") as envd's enum ("EVENT_TYPE_CREATE");
// nullptr for an unknown one.
const char* EventTypeName(std::string_view agent_type);
// FilesystemEvent: {"name":..,"type":..,"entry"?:EntryInfo}
std::string FilesystemEventJson(std::string_view name, const char* type,
                                const std::optional<proto::FileStat>& entry);
// WatchDirResponse's oneof: {"start":{}}, {"keepalive":{}},
// {"filesystem":FilesystemEvent}.
inline constexpr std::string_view kWatchStartJson = R"({"start":{}})";
inline constexpr std::string_view kWatchKeepaliveJson = R"({"keepalive":{}})";
std::string WatchEventMessageJson(const std::string& filesystem_event_json);

// --- errors -----------------------------------------------------------------------

// The Connect code of an agent's file error: its code's (ConnectCode), but
// an unknown user is unauthenticated ("invalid username"), as envd has it.
std::string FsConnectCode(const Error& e);
// The status of envd's plain-HTTP endpoints (/files) for an error: 400
// invalid_argument and failed_precondition (a directory where a file is
// wanted), 401 an unknown user, 403 permission_denied, 404 not_found, 409
// already_exists, 429 busy, 502 unavailable, 504 deadline_exceeded, 507
// resource_exhausted (no space: the SDK's NotEnoughSpaceError), else 500.
unsigned EnvdHttpStatus(const Error& e);
// {"code":<status>,"message":"..."}: envd's HTTP error body.
std::string EnvdHttpErrorJson(unsigned status, std::string_view message);

// --- /files and /envs -------------------------------------------------------------

// One written file of POST /files: {"name","type":"file","path"}.
struct WrittenFile {
  std::string name, path;
};
std::string UploadResultJson(const std::vector<WrittenFile>& files);
// The last component of a path ("/a/b.txt" -> "b.txt").
std::string BaseName(std::string_view path);
// GET /envs: {"K":"V",...} from "K=V" entries (later ones win; entries
// without '=' are skipped).
std::string EnvsJson(const std::vector<std::string>& env);

}  // namespace wb::daemon::e2b
