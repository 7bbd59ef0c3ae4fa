// A channel drawn: Graphviz DOT (one cluster per host, a node per stage with its program
// and replicas, an edge per from entry labelled with its condition) and a readable text form.
#pragma once

#include "manifest/manifest.h"

#include <string>

namespace mh::manifest {

std::string to_dot(const Manifest& manifest);
std::string to_text(const Manifest& manifest);

// "5 stages (2 sources, 2 destinations), 6 edges (1 conditional), 2 hosts, 8 processes"
std::string summary(const Manifest& manifest);

}  // namespace mh::manifest
