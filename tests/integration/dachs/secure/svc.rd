<!-- A protected SIA v1 service for the voharvest integration tests: the
SDSS-like images of voharvest/sdss/q, served to the DaCHS user "voharvest"
only (limitTo: HTTP basic auth, a 401 with WWW-Authenticate without it).
It has no table of its own, so it needs no import; setup_dachs.sh installs
it and creates the user (dachs adm adduser). The files it points to
(/getproduct) stay public, as for voharvest/sdss/q. -->
<resource schema="vh_secure" resdir=".">
  <meta name="creationDate">2024-05-01T12:00:00Z</meta>
  <meta name="title">VOH Protected Sloan-like Images</meta>
  <meta name="description">
    The SDSS-like images of the voharvest integration tests behind HTTP
    basic authentication, for tests of credentials.
  </meta>
  <meta name="creator">Harvester, V.</meta>
  <meta name="subject">sky-surveys</meta>
  <meta name="type">Survey</meta>
  <meta name="coverage.waveband">Optical</meta>

  <service id="i" allowed="form,siap.xml" limitTo="voharvest">
    <meta name="shortName">VOH SECURE</meta>
    <meta name="sia.type">Pointed</meta>
    <meta name="testQuery.pos.ra">202.47</meta>
    <meta name="testQuery.pos.dec">47.2</meta>
    <meta name="testQuery.size.ra">0.1</meta>
    <meta name="testQuery.size.dec">0.1</meta>

    <dbCore queriedTable="voharvest/sdss/q#main">
      <condDesc original="//siap#protoInput"/>
    </dbCore>
  </service>
</resource>
