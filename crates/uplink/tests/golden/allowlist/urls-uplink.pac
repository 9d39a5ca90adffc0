// uplink allowlist urls --format pac: profile uplink, workspace contoso, domain uplink.localhost, port 443; catalog uplink version 1 (2026-11-22)
// The hosts below go "DIRECT"; every other host goes "DIRECT".
// Routing is by host: a PAC file sees https URLs without their path.
function FindProxyForURL(url, host) {
  var h = String(host).toLowerCase();
  if (h.charAt(h.length - 1) == ".") h = h.substring(0, h.length - 1);
  var exact = {
    "contososensorapi.uplink.localhost": true,
    "contoso.uplink.localhost": true
  };
  if (Object.prototype.hasOwnProperty.call(exact, h)) return "DIRECT";
  return "DIRECT";
}
