// Files built into warmbox-image (cmake/embed_files.cmake): the code
// interpreter's server (src/interp/), which the template builder copies
// into the code-interpreter-v1 template (docs/e2b.md, "Code interpreter").
#pragma once

#include <string_view>
#include <vector>

namespace wb::imagetool {

struct EmbeddedFile {
  std::string_view name;  // base name: server.py
  std::string_view data;
};

// src/interp/'s files, sorted by name.
const std::vector<EmbeddedFile>& InterpFiles();

}  // namespace wb::imagetool
