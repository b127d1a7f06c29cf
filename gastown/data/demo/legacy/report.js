// legacy/report.js: still plain JavaScript
function report(value) {
  return String(value);
}
module.exports = { report };
