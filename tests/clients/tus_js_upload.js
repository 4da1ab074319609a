// Uploads one file with tus-js-client (npm, pinned in package.json) under
// Node, resuming from its URL store when an earlier run was cut off.
// Prints `PROGRESS SENT TOTAL` as bytes go out, `URL …` once the upload has
// one, and `DONE URL` at the end.
//
//     node tus_js_upload.js ENDPOINT TOKEN FILE URL_STORE [PARALLEL]
//
// Everything else is the client's default (one PATCH for the whole file;
// PARALLEL > 1 cuts it in that many partial uploads, concatenated at the end).
'use strict';
const fs = require('fs');
const path = require('path');
const tus = require('tus-js-client');

const [endpoint, token, file, store, parallel] = process.argv.slice(2);

async function main() {
  let announced = false;
  const upload = new tus.Upload(fs.createReadStream(file), {
    endpoint,
    headers: { Authorization: `Bearer ${token}` },
    metadata: { filename: path.basename(file) },
    urlStorage: new tus.FileUrlStorage(store),
    parallelUploads: Number(parallel || 1),
    onProgress(sent, total) {
      if (!announced && upload.url) {
        announced = true;
        console.log(`URL ${upload.url}`);
      }
      console.log(`PROGRESS ${sent} ${total}`);
    },
    onError(error) {
      console.error(`FAILED ${error}`);
      process.exit(1);
    },
    onSuccess() {
      console.log(`DONE ${upload.url}`);
    },
  });
  const previous = await upload.findPreviousUploads();
  if (previous.length > 0) {
    console.log(`RESUMING ${previous[0].uploadUrl}`);
    upload.resumeFromPreviousUpload(previous[0]);
  }
  upload.start();
}

main().catch((error) => {
  console.error(`FAILED ${error}`);
  process.exit(1);
});
