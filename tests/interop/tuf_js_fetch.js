// Refresh a site's TUF metadata with tuf-js and download one target.
// Usage: node tuf_js_fetch.js <metadata-url> <targets-url> <metadata-dir> <target-dir> <target-path>
const { Updater } = require("tuf-js");

async function main() {
  const [metadataBaseUrl, targetBaseUrl, metadataDir, targetDir, targetPath] = process.argv.slice(2);
  const updater = new Updater({ metadataBaseUrl, targetBaseUrl, metadataDir, targetDir });
  await updater.refresh();
  const info = await updater.getTargetInfo(targetPath);
  if (!info) throw new Error(`no target ${targetPath}`);
  const path = await updater.downloadTarget(info);
  process.stdout.write(JSON.stringify({ path, sha256: info.hashes.sha256, custom: info.custom }));
}

main().catch((error) => {
  process.stderr.write(`${error.name}: ${error.message}\n`);
  process.exit(1);
});
