<!-- An infrared image collection for the voharvest integration tests, served
through DataLink and SODA:

  - voharvest/dlimg/q/dl/dlmeta?ID=<pubDID>: the DataLink document of an
    image (#this: the FITS file, #preview: DaCHS's JPEG rendering, and a SODA
    sync service descriptor);
  - voharvest/dlimg/q/dl/dlget?ID=<pubDID>&CIRCLE=ra dec r (or POLYGON, POS,
    RA/DEC, PIXEL_1/2, ...): SODA cutouts, as FITS;
  - voharvest/dlimg/q/sia2/siap2.xml: SIA 2.0 over this collection alone
    (the ObsCore-like view "obscore" below), whose access_url is the DataLink
    document (access_format application/x-votable+xml;content=datalink);
  - voharvest/dlimg/q/i/siap.xml: SIA 1.0, whose access references are the
    FITS files (getproduct), with a DataLink service descriptor in the answer.

The pubDIDs are DaCHS's standard ones, ivo://<authority>/~?<accref>, e.g.
ivo://x-unregistred/~?voharvest/dlimg/data/dlimg_m51_J.fits.

The "obscore" view mixes in //obscore#publishObscoreLike, so the rows
are also in ivoa.obscore: the site-wide SIA 2.0 service
(/__system__/siap2/sitewide/siap2.xml) and TAP find them, with the
DataLink document as access_url. setup_dachs.sh imports //obscore first
and this RD after it (a re-import of this RD drops and re-adds its part of
ivoa.obscore). Not in our registry (rr). The images are synthetic;
tests/integration/dachs/make_fits.py writes them. -->
<resource schema="vh_dlimg" resdir=".">
  <meta name="creationDate">2024-06-01T12:00:00Z</meta>
  <meta name="title">VOH Infrared Images with Cutouts</meta>
  <meta name="description">
    Synthetic J and Ks band images, 800 by 800 pixels of one arcsecond,
    made for the voharvest integration tests: one image per band around each
    of a few bright galaxies, served through DataLink with SODA cutouts.
  </meta>
  <meta name="subject">infrared-astronomy</meta>
  <meta name="subject">galaxies</meta>
  <meta name="creator">Harvester, V.</meta>
  <meta name="instrument">VOH IR camera</meta>
  <meta name="facility">VOH IR telescope (simulated)</meta>
  <meta name="contentLevel">Research</meta>
  <meta name="type">Archive</meta>
  <meta name="coverage.waveband">Infrared</meta>

  <table id="main" onDisk="True" mixin="//siap#pgs" adql="True">
    <meta name="description">The infrared images with their SIA metadata.</meta>
    <!-- SIA 1.0 answers (and TAP queries on this table) get a DataLink
      service descriptor whose ID is pub_did. -->
    <meta name="_associatedDatalinkService">
      <meta name="serviceId">dl</meta>
      <meta name="idColumn">pub_did</meta>
    </meta>

    <column name="pub_did" type="text" ucd="meta.id;meta.main"
      tablehead="PubDID" verbLevel="15"
      description="Dataset identifier (publisher DID): the ID for DataLink
        and SODA"/>
    <column name="dlmeta_url" type="text" ucd="meta.ref.url"
      tablehead="DataLink" verbLevel="15"
      description="The DataLink document of the image"/>
    <column name="object" type="text" ucd="meta.id;src" tablehead="Object"
      description="Name of the target galaxy" verbLevel="15"/>
    <column name="exptime" type="real" unit="s" ucd="time.duration;obs.exposure"
      tablehead="T.Exp" description="Exposure time" verbLevel="15"/>
  </table>

  <!-- ObsCore-shaped view of main, for the SIA 2.0 service below and, through
    publishObscoreLike (whose parameters default to the columns of the same
    names), a part of ivoa.obscore. -->
  <table id="obscore" onDisk="True" adql="True"
      mixin="//obscore#publishObscoreLike">
    <meta name="description">The infrared images as ObsCore records; the
      access URLs are DataLink documents.</meta>
    <meta name="_associatedDatalinkService">
      <meta name="serviceId">dl</meta>
      <meta name="idColumn">obs_publisher_did</meta>
    </meta>
    <FEED source="//obscore#obscore-columns"/>
    <viewStatement>
      CREATE OR REPLACE VIEW \qName (\colNames) AS (SELECT
        CAST('image' AS text),
        CAST(NULL AS text),
        CAST(2 AS smallint),
        CAST('VOH DLIMG' AS text),
        CAST(accref AS text),
        CAST(imageTitle AS text),
        CAST(pub_did AS text),
        CAST(NULL AS text),
        CAST(dlmeta_url AS text),
        CAST('application/x-votable+xml;content=datalink' AS text),
        CAST(accsize/1024 AS bigint),
        CAST(object AS text),
        CAST('Galaxy' AS text),
        CAST(centerAlpha AS double precision),
        CAST(centerDelta AS double precision),
        CAST(pixelScale[1]*pixelSize[1] AS real),
        CAST(coverage AS spoly),
        CAST(pixelScale[1]*3600 AS real),
        CAST(dateObs AS double precision),
        CAST(dateObs+exptime/86400. AS double precision),
        CAST(exptime AS double precision),
        CAST(NULL AS double precision),
        CAST(bandpassLo AS real),
        CAST(bandpassHi AS real),
        CAST(NULL AS real),
        CAST('phot.flux;em.IR' AS text),
        CAST(NULL AS text),
        CAST(\sqlquote{\metaString{facility}} AS text),
        CAST(instId AS text),
        CAST(pixelSize[1] AS bigint),
        CAST(pixelSize[2] AS bigint),
        CAST(1 AS bigint),
        CAST(1 AS bigint),
        CAST(1 AS bigint),
        CAST(pixelScale[1]*3600 AS real),
        CAST(NULL AS text),
        CAST(accref || '?preview=True' AS text),
        CAST('\schema.obscore' AS text)
      FROM \schema.main)
    </viewStatement>
  </table>

  <data id="import" recreateAfter="make_obscore">
    <sources pattern="data/*.fits"/>
    <fitsProdGrammar>
      <rowfilter procDef="//products#define">
        <bind key="table">"\schema.main"</bind>
      </rowfilter>
    </fitsProdGrammar>

    <make table="main">
      <rowmaker>
        <apply procDef="//siap#setMeta">
          <bind key="dateObs">float(@MJD_OBS)</bind>
          <bind key="bandpassId">@FILTER</bind>
          <bind key="bandpassLo">float(@WAVEMIN)</bind>
          <bind key="bandpassHi">float(@WAVEMAX)</bind>
          <bind key="bandpassRefval">float(@WAVEREF)</bind>
          <bind key="pixflags">"Z"</bind>
          <bind key="title">"VOH DLIMG {} {}".format(@OBJECT, @FILTER)</bind>
        </apply>
        <apply procDef="//siap#computePGS"/>
        <!-- DaCHS's standard pubDID (\standardPubDID refuses to make one
          while the authority is DaCHS's default, x-unregistred, which we
          keep: the other collections' obs_publisher_did use it). -->
        <var key="pubDID">"ivo://{}/~?{}".format(
          base.getConfig("ivoa", "authority"), @prodtblAccref)</var>
        <map key="pub_did">@pubDID</map>
        <map key="dlmeta_url">"{}?ID={}".format(
          rd_.getById("dl").getURL("dlmeta", absolute=True),
          urllib.parse.quote(@pubDID))</map>
        <map key="object">@OBJECT</map>
        <map key="exptime">float(@EXPTIME)</map>
      </rowmaker>
    </make>
  </data>

  <data id="make_obscore" auto="False">
    <make table="obscore"/>
  </data>

  <!-- DataLink with SODA: DaCHS's standard FITS functions (cutouts by
    CIRCLE, POLYGON, POS, RA/DEC, PIXEL_n; SCALE; KIND=HEADER). -->
  <service id="dl" allowed="dlget,dlmeta">
    <meta name="title">VOH Infrared Images DataLink and SODA</meta>
    <meta name="description">DataLink documents and SODA cutouts of the
      VOH infrared images.</meta>
    <meta name="dlget.description">Cutouts of the VOH infrared images
      (SODA sync).</meta>
    <datalinkCore>
      <descriptorGenerator procDef="//soda#fits_genDesc" name="genFITSDesc">
        <bind key="accrefPrefix">"voharvest/dlimg/"</bind>
      </descriptorGenerator>
      <FEED source="//soda#fits_standardDLFuncs"/>
    </datalinkCore>
  </service>

  <service id="sia2" allowed="siap2.xml,form">
    <meta name="shortName">VOH DLIMG SIAv2</meta>
    <meta name="sia.type">Pointed</meta>
    <meta name="testQuery.pos.ra">202.47</meta>
    <meta name="testQuery.pos.dec">47.2</meta>
    <meta name="testQuery.size.ra">0.1</meta>
    <meta name="testQuery.size.dec">0.1</meta>
    <dbCore queriedTable="obscore">
      <FEED source="//siap2#parameters"/>
    </dbCore>
  </service>

  <service id="i" allowed="form,siap.xml">
    <meta name="shortName">VOH DLIMG</meta>
    <meta name="sia.type">Pointed</meta>
    <meta name="testQuery.pos.ra">202.47</meta>
    <meta name="testQuery.pos.dec">47.2</meta>
    <meta name="testQuery.size.ra">0.1</meta>
    <meta name="testQuery.size.dec">0.1</meta>
    <dbCore queriedTable="main">
      <condDesc original="//siap#protoInput"/>
    </dbCore>
  </service>
</resource>
