// uplink's PAC helper functions, run once in every PAC context before the PAC itself.
//
// The string helpers are JavaScript because browsers define them over JavaScript strings and
// regular expressions (shExpMatch's pattern is turned into a RegExp, so "(a|b)" alternation works
// as it does in Chromium and Firefox). Address, DNS and clock helpers call the native functions in
// `N`, which this script receives and then removes from the global object, so a PAC sees only the
// standard helper names.
(function (g, N) {
  'use strict';
  var define = function (name, fn) {
    Object.defineProperty(g, name, { value: fn, writable: true, configurable: true, enumerable: false });
  };
  var isStr = function (v) { return typeof v === 'string'; };
  var args = function (a) { return Array.prototype.slice.call(a); };
  var tz = function () { return -(new Date()).getTimezoneOffset(); };

  define('isPlainHostName', function isPlainHostName(host) {
    if (!isStr(host)) throw new TypeError('Requires 1 string parameter');
    return host.indexOf('.') < 0 && !N.isIpv6(host);
  });
  define('dnsDomainIs', function dnsDomainIs(host, domain) {
    if (!isStr(host) || !isStr(domain)) return false;
    return host.length >= domain.length && host.substring(host.length - domain.length) === domain;
  });
  define('localHostOrDomainIs', function localHostOrDomainIs(host, hostdom) {
    if (!isStr(host) || !isStr(hostdom)) return false;
    return host === hostdom || hostdom.lastIndexOf(host + '.', 0) === 0;
  });
  define('dnsDomainLevels', function dnsDomainLevels(host) {
    if (!isStr(host)) return 0;
    return host.split('.').length - 1;
  });

  // Compiled patterns, bounded so a PAC building patterns from URLs cannot grow it forever.
  var patterns = new Map();
  define('shExpMatch', function shExpMatch(str, shexp) {
    if (!isStr(str) || !isStr(shexp)) return false;
    var re = patterns.get(shexp);
    if (re === undefined) {
      if (patterns.size >= 4096) patterns.clear();
      try {
        re = new RegExp('^' + shexp.replace(/\./g, '\\.').replace(/\*/g, '.*').replace(/\?/g, '.') + '$');
      } catch (e) {
        re = null;
      }
      patterns.set(shexp, re);
    }
    return re !== null && re.test(str);
  });

  define('isInNet', function isInNet(host, pattern, mask) {
    if (!isStr(host) || !isStr(pattern) || !isStr(mask)) return false;
    return N.isInNet(host, pattern, mask);
  });
  define('dnsResolve', function dnsResolve(host) {
    if (!isStr(host)) return null;
    return N.dnsResolve(host) || null;
  });
  define('isResolvable', function isResolvable(host) {
    if (!isStr(host)) return false;
    return !!N.dnsResolve(host);
  });
  define('myIpAddress', function myIpAddress() { return N.myIpAddress(); });

  define('weekdayRange', function weekdayRange() { return N.clock(0, tz(), args(arguments)); });
  define('dateRange', function dateRange() { return N.clock(1, tz(), args(arguments)); });
  define('timeRange', function timeRange() { return N.clock(2, tz(), args(arguments)); });
  define('alert', function alert(message) { N.alert(String(message)); });

  // Microsoft's IPv6 extensions.
  define('dnsResolveEx', function dnsResolveEx(host) {
    if (!isStr(host)) return '';
    return N.dnsResolveEx(host);
  });
  define('isResolvableEx', function isResolvableEx(host) {
    if (!isStr(host)) return false;
    return N.dnsResolveEx(host) !== '';
  });
  define('myIpAddressEx', function myIpAddressEx() { return N.myIpAddressEx(); });
  define('isInNetEx', function isInNetEx(ip, prefix) {
    if (arguments.length < 2 || !isStr(ip) || !isStr(prefix)) return null;
    return N.isInNetEx(ip, prefix);
  });
  define('sortIpAddressList', function sortIpAddressList(list) {
    if (!isStr(list)) return null;
    return N.sortIpAddressList(list);
  });
  define('getClientVersion', function getClientVersion() { return '1.0'; });
})(globalThis, globalThis.__uplink_native);
delete globalThis.__uplink_native;
