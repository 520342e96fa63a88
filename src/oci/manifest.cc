#include "oci/manifest.h"

#include <nlohmann/json.hpp>

#include "base/json.h"
#include "base/strings.h"
#include "oci/reference.h"

namespace wb::oci {
namespace {

using nlohmann::json;

Result<json> ParseJson(std::string_view body, const char* what) {
  auto j = WB_TRY(ParseJsonBounded(body, what));
  if (!j.is_object()) return Fail("parse", what, "not a JSON object");
  return j;
}

std::string Str(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

Result<Descriptor> ParseDescriptor(const json& j, const char* what) {
  if (!j.is_object()) return Fail("parse", what, "descriptor is not an object");
  Descriptor d;
  d.media_type = Str(j, "mediaType");
  d.digest = Str(j, "digest");
  if (auto v = ValidateDigest(d.digest); !v.ok())
    return Fail("parse", what, "bad digest '" + d.digest + "'");
  auto size = j.find("size");
  if (size == j.end() || !size->is_number_unsigned())
    return Fail("parse", what, "missing or bad size");
  d.size = size->get<uint64_t>();
  if (auto p = j.find("platform"); p != j.end() && p->is_object()) {
    d.os = Str(*p, "os");
    d.architecture = Str(*p, "architecture");
    d.variant = Str(*p, "variant");
  }
  if (auto a = j.find("annotations"); a != j.end() && a->is_object()) {
    d.ref_name = Str(*a, "org.opencontainers.image.ref.name");
  }
  return d;
}

std::vector<std::string> StrList(const json& j, const char* key) {
  std::vector<std::string> out;
  auto it = j.find(key);
  if (it == j.end() || !it->is_array()) return out;
  for (const auto& e : *it) {
    if (e.is_string()) out.push_back(e.get<std::string>());
  }
  return out;
}

}  // namespace

std::string ManifestAcceptHeader() {
  return std::string(kOciIndex) + ", " + kOciManifest + ", " + kDockerList + ", " + kDockerManifest;
}

Result<ManifestKind> ClassifyManifest(std::string_view content_type, std::string_view body) {
  json j = WB_TRY(ParseJson(body, "manifest"));
  std::string mt = Str(j, "mediaType");
  std::string ct(Trim(content_type.substr(0, content_type.find(';'))));
  for (const std::string& t : {mt, ct}) {
    if (t == kOciIndex || t == kDockerList) return ManifestKind::kIndex;
    if (t == kOciManifest || t == kDockerManifest) return ManifestKind::kManifest;
    if (StartsWith(t, "application/vnd.docker.distribution.manifest.v1")) {
      return Fail(
          "manifest", t,
          "Docker schema 1 manifests are not supported (push the image again with a current tool)");
    }
  }
  // OCI allows omitting mediaType: decide by shape.
  if (j.contains("manifests")) return ManifestKind::kIndex;
  if (j.contains("layers") && j.contains("config")) return ManifestKind::kManifest;
  if (j.contains("fsLayers"))
    return Fail("manifest", "schema 1", "Docker schema 1 manifests are not supported");
  return Fail("manifest", mt.empty() ? ct : mt, "neither an image manifest nor an index");
}

Result<std::vector<Descriptor>> ParseIndex(std::string_view body) {
  json j = WB_TRY(ParseJson(body, "index"));
  auto m = j.find("manifests");
  if (m == j.end() || !m->is_array()) return Fail("parse", "index", "missing manifests array");
  std::vector<Descriptor> out;
  for (const auto& e : *m) out.push_back(WB_TRY(ParseDescriptor(e, "index entry")));
  return out;
}

Result<Manifest> ParseManifest(std::string_view body) {
  json j = WB_TRY(ParseJson(body, "manifest"));
  Manifest m;
  auto c = j.find("config");
  if (c == j.end()) return Fail("parse", "manifest", "missing config");
  m.config = WB_TRY(ParseDescriptor(*c, "manifest config"));
  auto l = j.find("layers");
  if (l == j.end() || !l->is_array()) return Fail("parse", "manifest", "missing layers array");
  for (const auto& e : *l) {
    Descriptor d = WB_TRY(ParseDescriptor(e, "manifest layer"));
    if (!d.media_type.empty() && !IsLayerMediaType(d.media_type)) {
      return Fail("manifest layer", d.media_type, "unsupported layer media type");
    }
    m.layers.push_back(std::move(d));
  }
  if (m.layers.size() > 500) return Fail("parse", "manifest", "more than 500 layers");
  return m;
}

Result<Descriptor> SelectPlatform(const std::vector<Descriptor>& index, std::string_view os,
                                  std::string_view arch) {
  std::string seen;
  for (const auto& d : index) {
    if (d.os == os && d.architecture == arch) return d;
    if (!d.os.empty() && d.os != "unknown") {
      seen += (seen.empty() ? "" : ", ") + d.os + "/" + d.architecture +
              (d.variant.empty() ? "" : "/" + d.variant);
    }
  }
  return Fail("select platform", std::string(os) + "/" + std::string(arch),
              "the image has no manifest for it" +
                  (seen.empty() ? std::string() : " (it has " + seen + ")"));
}

Result<RuntimeConfig> ParseImageConfig(std::string_view body) {
  json j = WB_TRY(ParseJson(body, "image config"));
  RuntimeConfig rc;
  if (auto fs = j.find("rootfs"); fs != j.end() && fs->is_object()) {
    rc.diff_ids = StrList(*fs, "diff_ids");
  }
  auto c = j.find("config");
  if (c == j.end() || c->is_null()) return rc;
  if (!c->is_object()) return Fail("parse", "image config", "config is not an object");
  rc.env = StrList(*c, "Env");
  rc.cmd = StrList(*c, "Cmd");
  rc.entrypoint = StrList(*c, "Entrypoint");
  rc.working_dir = Str(*c, "WorkingDir");
  rc.user = Str(*c, "User");
  if (auto l = c->find("Labels"); l != c->end() && l->is_object()) {
    for (const auto& [k, v] : l->items()) {
      if (v.is_string()) rc.labels[k] = v.get<std::string>();
    }
  }
  return rc;
}

bool IsLayerMediaType(std::string_view t) {
  return StartsWith(t, "application/vnd.oci.image.layer.") ||
         StartsWith(t, "application/vnd.docker.image.rootfs.");
}

}  // namespace wb::oci
