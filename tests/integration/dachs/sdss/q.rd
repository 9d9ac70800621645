<!-- An SDSS-like optical image collection for the voharvest integration
tests: SIA v1 (//siap#pgs) at voharvest/sdss/q/i/siap.xml, and its images
in ivoa.obscore (//obscore#publishSIAP) for the site-wide SIA v2 service.
The images are synthetic; tests/integration/dachs/make_fits.py writes them. -->
<resource schema="vh_sdss" resdir=".">
  <meta name="creationDate">2024-05-01T12:00:00Z</meta>
  <meta name="title">VOH Sloan-like Optical Images</meta>
  <meta name="description">
    Synthetic g and r band images in the style of the Sloan Digital Sky
    Survey (SDSS), made for the voharvest integration tests: one image per
    band around each of a few bright galaxies.
  </meta>
  <meta name="subject">sky-surveys</meta>
  <meta name="subject">galaxies</meta>
  <meta name="creator">Harvester, V.; Testbed, D.</meta>
  <meta name="instrument">VOH imaging camera</meta>
  <meta name="facility">SDSS 2.5m (simulated)</meta>
  <meta name="contentLevel">Research</meta>
  <meta name="type">Survey</meta>
  <meta name="coverage.waveband">Optical</meta>

  <table id="main" onDisk="True" mixin="//siap#pgs" adql="True">
    <meta name="description">The SDSS-like images with their SIA metadata.</meta>
    <mixin
      calibLevel="2"
      collectionName="'VOH SDSS'"
      targetName="object"
      expTime="exptime"
      targetClass="'Galaxy'"
    >//obscore#publishSIAP</mixin>

    <column name="object" type="text" ucd="meta.id;src" tablehead="Object"
      description="Name of the target galaxy" verbLevel="15"/>
    <column name="exptime" type="real" unit="s" ucd="time.duration;obs.exposure"
      tablehead="T.Exp" description="Exposure time" verbLevel="15"/>
  </table>

  <data id="import">
    <sources pattern="data/*.fits"/>
    <!-- Every FITS file gives two rows: the FITS image and its JPEG
      rendering (written next to it by make_fits.py), with the same WCS, so an
      SIA v1 search with FORMAT=image/jpeg finds JPEGs. -->
    <fitsProdGrammar>
      <rowfilter name="alsoJPEG">
        <code>
          row["vh_jpeg"] = False
          yield row
          jpeg = row.copy()
          jpeg["vh_jpeg"] = True
          yield jpeg
        </code>
      </rowfilter>
      <rowfilter procDef="//products#define">
        <bind key="table">"\schema.main"</bind>
        <bind key="accref">(\inputRelativePath{False})[:-len(".fits")] + ".jpg" if @vh_jpeg else \inputRelativePath{False}</bind>
        <bind key="path">(\inputRelativePath{True})[:-len(".fits")] + ".jpg" if @vh_jpeg else \inputRelativePath{True}</bind>
        <bind key="fsize">os.path.getsize(rowIter.sourceToken[:-len(".fits")] + ".jpg") if @vh_jpeg else \inputSize</bind>
        <bind key="mime">"image/jpeg" if @vh_jpeg else "image/fits"</bind>
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
          <bind key="pixflags">"V" if @vh_jpeg else "Z"</bind>
          <bind key="title">"VOH SDSS {} {}{}".format(
            @OBJECT, @FILTER, " (JPEG)" if @vh_jpeg else "")</bind>
        </apply>
        <apply procDef="//siap#computePGS"/>
        <map key="object">@OBJECT</map>
        <map key="exptime">float(@EXPTIME)</map>
      </rowmaker>
    </make>
  </data>

  <service id="i" allowed="form,siap.xml">
    <meta name="shortName">VOH SDSS</meta>
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
