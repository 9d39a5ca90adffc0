// uplink allowlist urls --format pac: profile mde, cloud commercial, streamlined connectivity, region eu; catalog mde version 1 (2026-11-22)
// The hosts below go "PROXY proxy.corp.example:8080"; every other host goes "PROXY inspect.corp.example:3128; DIRECT".
// Routing is by host: a PAC file sees https URLs without their path.
// Path patterns routed as their whole host: www.microsoft.com/security/encyclopedia/adlpackages.aspx, www.microsoft.com/pkiops/*, www.microsoft.com/pki/*, *.blob.core.windows.net/networkscannerstable/*.
function FindProxyForURL(url, host) {
  var h = String(host).toLowerCase();
  if (h.charAt(h.length - 1) == ".") h = h.substring(0, h.length - 1);
  var exact = {
    "packages.microsoft.com": true,
    "officecdn-microsoft-com.akamaized.net": true,
    "go.microsoft.com": true,
    "definitionupdates.microsoft.com": true,
    "www.microsoft.com": true,
    "crl.microsoft.com": true,
    "login.microsoftonline.com": true,
    "login.live.com": true,
    "login.windows.net": true,
    "static2.sharepointonline.com": true,
    "security.microsoft.com": true
  };
  if (Object.prototype.hasOwnProperty.call(exact, h)) return "PROXY proxy.corp.example:8080";
  var suffixes = [
    ".smartscreen-prod.microsoft.com",
    ".smartscreen.microsoft.com",
    ".checkappexec.microsoft.com",
    ".urs.microsoft.com",
    ".update.microsoft.com",
    ".delivery.mp.microsoft.com",
    ".windowsupdate.com",
    ".download.microsoft.com",
    ".wns.windows.com",
    ".security.microsoft.com",
    ".blob.core.windows.net",
    ".microsoftonline-p.com",
    ".securitycenter.windows.com"
  ];
  for (var i = 0; i < suffixes.length; i++) {
    if (dnsDomainIs(h, suffixes[i])) return "PROXY proxy.corp.example:8080";
  }
  return "PROXY inspect.corp.example:3128; DIRECT";
}
