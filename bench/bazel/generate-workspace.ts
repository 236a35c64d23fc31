/**
 * Writes the generated Bazel workspace the B1/B2 benchmarks build: a layered graph of C++ libraries
 * (each depends on a few libraries of the layer below, as real code bases do), cc_binary and cc_test
 * targets on top, and genrules that chain into each other, run a built binary as a tool and feed a
 * generated header back into the C++ graph. The content is a pure function of the options (seeded),
 * so every run and every machine builds the same actions.
 */
import { cpSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** Shape of the generated workspace. */
export interface WorkspaceShape {
  /** Layers of cc_library targets; layer 0 has no library deps. */
  layers: number;
  /** cc_library targets per layer. */
  librariesPerLayer: number;
  /** Library deps each library of layer > 0 takes from the layer below (at most). */
  depsPerLibrary: number;
  /** cc_binary targets (each depends on a few top-layer libraries), besides the genrules' tool. */
  binaries: number;
  /** cc_test targets (each tests one library). */
  tests: number;
  /** genrule targets. */
  genrules: number;
  /** Seed of the pseudo-random choices (deps, constants). */
  seed: number;
}

/** The shape used by full runs: >= 100 C/C++ targets plus >= 20 genrules. */
export const FULL_SHAPE: WorkspaceShape = { layers: 6, librariesPerLayer: 16, depsPerLibrary: 3, binaries: 6, tests: 6, genrules: 24, seed: 4242 };

/** The shape used by `--quick`: ~30 C/C++ targets, so both builds take seconds, not minutes. */
export const QUICK_SHAPE: WorkspaceShape = { layers: 3, librariesPerLayer: 7, depsPerLibrary: 2, binaries: 3, tests: 3, genrules: 8, seed: 4242 };

/** What was generated, for the report. */
export interface GeneratedWorkspace {
  dir: string;
  ccLibraries: number;
  ccBinaries: number;
  ccTests: number;
  genrules: number;
  /** cc_library + cc_binary + cc_test. */
  ccTargets: number;
  /** Every file written (relative path -> content), for tests and determinism checks. */
  files: Map<string, string>;
}

/** mulberry32: a tiny deterministic PRNG; Math.random would make every run build different actions. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const libName = (layer: number, index: number) => `l${layer}_${index}`;
const libLabel = (layer: number, index: number) => `//libs/${libName(layer, index)}`;
const libHeader = (layer: number, index: number) => `libs/${libName(layer, index)}/${libName(layer, index)}.h`;

/** Picks `count` distinct integers in [0, n) in ascending order. */
function pickDistinct(rand: () => number, n: number, count: number): number[] {
  const chosen = new Set<number>();
  const want = Math.min(count, n);
  for (let guard = 0; chosen.size < want && guard < 1000; guard++) chosen.add(Math.floor(rand() * n));
  return [...chosen].sort((a, b) => a - b);
}

function libraryHeader(name: string): string {
  const guard = `BENCH_${name.toUpperCase()}_H_`;
  return `#ifndef ${guard}
#define ${guard}

#include <string>

namespace ${name} {

// Folds x through this library and everything it depends on.
long compute(long x);

// A printable summary of compute(n).
std::string describe(int n);

}  // namespace ${name}

#endif  // ${guard}
`;
}

/**
 * A translation unit of modest compile cost (~0.5-0.8 s at -O0): a few standard containers and
 * algorithms instantiated with a library-specific constant, plus calls into its deps.
 */
function librarySource(name: string, deps: string[], depHeaders: string[], extraInclude: string | undefined, constant: number): string {
  const includes = [...depHeaders.map((h) => `#include "${h}"`), ...(extraInclude ? [`#include "${extraInclude}"`] : [])].join('\n');
  const depCalls = deps.map((d) => `  acc += ${d}::compute(x % ${constant + 3});`).join('\n');
  const generated = extraInclude ? '  acc += BENCH_GENERATED_CONSTANT;\n' : '';
  return `#include "libs/${name}/${name}.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

${includes}

namespace ${name} {
namespace {

struct Entry {
  long key;
  std::string label;
  bool operator<(const Entry& other) const { return key < other.key; }
};

std::vector<Entry> table(long x) {
  std::vector<Entry> entries;
  for (long i = 0; i < (x % 17) + ${(constant % 11) + 5}; ++i) {
    entries.push_back(Entry{(i * ${constant}) % 97, std::to_string(i * x)});
  }
  std::sort(entries.begin(), entries.end());
  return entries;
}

}  // namespace

long compute(long x) {
  std::map<long, std::string> index;
  for (const Entry& e : table(x)) index[e.key] += e.label;
  long acc = std::accumulate(index.begin(), index.end(), ${constant}L,
                             [](long sum, const std::pair<const long, std::string>& kv) {
                               return sum + kv.first + static_cast<long>(kv.second.size());
                             });
${depCalls}
${generated}  return acc % 1000003;
}

std::string describe(int n) {
  std::ostringstream out;
  out << "${name}(" << n << ") = " << compute(n);
  return out.str();
}

}  // namespace ${name}
`;
}

function buildFile(rules: string[]): string {
  return `package(default_visibility = ["//visibility:public"])\n\n${rules.join('\n\n')}\n`;
}

const starlarkList = (items: string[]) => `[${items.map((s) => JSON.stringify(s)).join(', ')}]`;

/**
 * Generates the workspace in memory: relative path -> content. `generateWorkspace` writes it; this
 * split keeps the generator testable without touching the disk.
 */
export function renderWorkspace(shape: WorkspaceShape): { files: Map<string, string>; counts: Omit<GeneratedWorkspace, 'dir' | 'files'> } {
  if (shape.layers < 1 || shape.librariesPerLayer < 1) throw new Error('Failed to generate the workspace: it needs at least one layer of one library');
  const rand = seededRandom(shape.seed);
  const files = new Map<string, string>();
  const top = shape.layers - 1;
  // Two layer-0 libraries include a header a genrule writes, so the C++ graph waits on a genrule.
  const generatedHeaderUsers = new Set([0, Math.min(1, shape.librariesPerLayer - 1)]);

  for (let layer = 0; layer < shape.layers; layer++) {
    for (let index = 0; index < shape.librariesPerLayer; index++) {
      const name = libName(layer, index);
      const depIdx = layer === 0 ? [] : pickDistinct(rand, shape.librariesPerLayer, 1 + Math.floor(rand() * shape.depsPerLibrary));
      const deps = depIdx.map((i) => libName(layer - 1, i));
      const depLabels = depIdx.map((i) => libLabel(layer - 1, i));
      const usesGenerated = layer === 0 && generatedHeaderUsers.has(index) && shape.genrules > 0;
      const constant = 7 + Math.floor(rand() * 900);
      files.set(`libs/${name}/${name}.h`, libraryHeader(name));
      files.set(
        `libs/${name}/${name}.cc`,
        librarySource(name, deps, depIdx.map((i) => libHeader(layer - 1, i)), usesGenerated ? 'gen/generated_config.h' : undefined, constant),
      );
      const allDeps = [...depLabels, ...(usesGenerated ? ['//gen:generated_config'] : [])];
      files.set(
        `libs/${name}/BUILD`,
        buildFile([
          `cc_library(\n    name = "${name}",\n    srcs = ["${name}.cc"],\n    hdrs = ["${name}.h"],\n    deps = ${starlarkList(allDeps)},\n)`,
        ]),
      );
    }
  }

  const appRules: string[] = [];
  for (let b = 0; b < shape.binaries; b++) {
    const idx = pickDistinct(rand, shape.librariesPerLayer, Math.min(3, shape.librariesPerLayer));
    const names = idx.map((i) => libName(top, i));
    files.set(
      `apps/app_${b}.cc`,
      `#include <cstdlib>\n#include <iostream>\n\n${idx.map((i) => `#include "${libHeader(top, i)}"`).join('\n')}\n\n` +
        `int main(int argc, char** argv) {\n  int n = argc > 1 ? std::atoi(argv[1]) : ${b + 3};\n` +
        names.map((n) => `  std::cout << ${n}::describe(n) << "\\n";`).join('\n') +
        `\n  return 0;\n}\n`,
    );
    appRules.push(`cc_binary(\n    name = "app_${b}",\n    srcs = ["app_${b}.cc"],\n    deps = ${starlarkList(idx.map((i) => libLabel(top, i)))},\n)`);
  }
  files.set('apps/BUILD', buildFile(appRules));

  // The genrules' tool: one source file plus one layer-0 library.
  files.set(
    'tools/table_tool.cc',
    `#include <cstdlib>\n#include <iostream>\n\n#include "${libHeader(0, 0)}"\n\n` +
      `int main(int argc, char** argv) {\n  int rows = argc > 1 ? std::atoi(argv[1]) : 4;\n` +
      `  for (int i = 1; i <= rows; ++i) std::cout << i << " " << ${libName(0, 0)}::describe(i) << "\\n";\n  return 0;\n}\n`,
  );
  files.set('tools/BUILD', buildFile([`cc_binary(\n    name = "table_tool",\n    srcs = ["table_tool.cc"],\n    deps = ["${libLabel(0, 0)}"],\n)`]));

  const testRules: string[] = [];
  for (let t = 0; t < shape.tests; t++) {
    const layer = t % shape.layers;
    const index = Math.floor(rand() * shape.librariesPerLayer);
    const name = libName(layer, index);
    files.set(
      `tests/test_${t}.cc`,
      `#include <cstdlib>\n#include <iostream>\n\n#include "${libHeader(layer, index)}"\n\n` +
        `int main() {\n  // compute() is deterministic and reduced modulo 1000003.\n  long a = ${name}::compute(${t + 5});\n  long b = ${name}::compute(${t + 5});\n` +
        `  if (a != b || a < 0 || a >= 1000003) {\n    std::cerr << "FAIL: ${name}::compute is not deterministic\\n";\n    return EXIT_FAILURE;\n  }\n  std::cout << ${name}::describe(${t}) << "\\n";\n  return EXIT_SUCCESS;\n}\n`,
    );
    testRules.push(`cc_test(\n    name = "test_${t}",\n    srcs = ["test_${t}.cc"],\n    deps = ["${libLabel(layer, index)}"],\n)`);
  }
  files.set('tests/BUILD', buildFile(testRules));

  if (shape.genrules > 0) {
    files.set('gen/seed.txt', Array.from({ length: 40 }, (_, i) => `line ${i} ${Math.floor(rand() * 1e6)}`).join('\n') + '\n');
    const genRules: string[] = [];
    // gen_0 always exists: a header consumed by layer-0 libraries.
    genRules.push(
      `genrule(\n    name = "config_header",\n    srcs = ["seed.txt"],\n    outs = ["generated_config.h"],\n` +
        `    cmd = "echo \\"#define BENCH_GENERATED_CONSTANT $$(wc -l < $<)L\\" > $@",\n)`,
      `cc_library(\n    name = "generated_config",\n    hdrs = [":generated_config.h"],\n)`,
    );
    const outputs: string[] = [];
    for (let g = 1; g < shape.genrules; g++) {
      const name = `gen_${g}`;
      const kind = g % 4;
      if (kind === 1 || outputs.length === 0) {
        // Source-only: transforms the checked-in seed file.
        genRules.push(`genrule(\n    name = "${name}",\n    srcs = ["seed.txt"],\n    outs = ["${name}.txt"],\n    cmd = "sed 's/line/${name}/' $< | sort -k3 -n > $@",\n)`);
      } else if (kind === 2) {
        // Consumes one or two earlier genrules' outputs.
        const ins = pickDistinct(rand, outputs.length, 2).map((i) => outputs[i]!);
        genRules.push(
          `genrule(\n    name = "${name}",\n    srcs = ${starlarkList(ins.map((o) => `:${o}`))},\n    outs = ["${name}.txt"],\n` +
            `    cmd = "cat $(SRCS) | sort | uniq -c | sort -rn > $@",\n)`,
        );
      } else if (kind === 3) {
        // Runs a freshly built binary as a tool (built again in the exec configuration, as code
        // generators are; it is small so that the exec configuration does not double the build).
        genRules.push(
          `genrule(\n    name = "${name}",\n    outs = ["${name}.txt"],\n    cmd = "$(location //tools:table_tool) ${g} > $@",\n    tools = ["//tools:table_tool"],\n)`,
        );
      } else {
        // Two outputs from one action, one of them an executable script.
        const input = outputs[Math.floor(rand() * outputs.length)]!;
        genRules.push(
          `genrule(\n    name = "${name}",\n    srcs = [":${input}"],\n    outs = ["${name}.txt", "${name}.sh"],\n` +
            `    cmd = "wc -l $(SRCS) > $(location ${name}.txt) && printf '#!/bin/sh\\\\necho ${name}\\\\n' > $(location ${name}.sh) && chmod +x $(location ${name}.sh)",\n)`,
        );
      }
      outputs.push(name);
    }
    files.set('gen/BUILD', buildFile(genRules));
  }

  const ccLibraries = shape.layers * shape.librariesPerLayer + (shape.genrules > 0 ? 1 : 0);
  return {
    files,
    counts: {
      ccLibraries,
      ccBinaries: shape.binaries + 1,
      ccTests: shape.tests,
      genrules: shape.genrules,
      ccTargets: ccLibraries + shape.binaries + 1 + shape.tests,
    },
  };
}

/**
 * Writes the workspace into `dir` (which must be empty or absent): the fixture's WORKSPACE and
 * `stubs/` (so Bazel 4.2.3 downloads nothing) plus the generated packages.
 */
export function generateWorkspace(dir: string, fixtureDir: string, shape: WorkspaceShape): GeneratedWorkspace {
  const { files, counts } = renderWorkspace(shape);
  mkdirSync(dir, { recursive: true });
  try {
    cpSync(join(fixtureDir, 'WORKSPACE'), join(dir, 'WORKSPACE'));
    cpSync(join(fixtureDir, 'stubs'), join(dir, 'stubs'), { recursive: true });
  } catch (err) {
    throw new Error(`Failed to copy WORKSPACE and stubs/ from the fixture workspace ${fixtureDir}: ${(err as Error).message}`, { cause: err });
  }
  for (const [rel, content] of files) {
    const path = join(dir, rel);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, content);
  }
  return { dir, files, ...counts };
}
